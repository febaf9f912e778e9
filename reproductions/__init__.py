"""Published tables as data: one reproduction file per paper table (see dgbench.harness.reproduce);
measured results with provenance under results/."""
