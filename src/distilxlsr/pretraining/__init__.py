"""Teacher pretraining: the small multilingual teacher the offline pipeline ships
(docs/design.md, "Teacher pretraining")."""
