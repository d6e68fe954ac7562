"""A companion's birth: a fresh home with its first weights (`create`), the starter corpus it learns
language from (`corpus`), and the nursery that trains a newborn on it (`nursery`)."""
