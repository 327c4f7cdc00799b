"""Our Lava processes, one package per family (Lava's compiler executes every .py beside a process)."""
