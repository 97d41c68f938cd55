"""Lock drivers, one package per lock family; each is imported only when configured."""
