"""`distilxlsr bench`: throughput, memory and efficiency figures, each measured side by side in
one run. `suite` runs the sections and prints the table; `common` holds what the sections share
(timing, the teacher-student pair and its step, batches); `cpu`, `gpu` and `shapes` hold the
sections. docs/design.md ("Benchmarks") says what each figure means."""
