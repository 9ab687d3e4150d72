"""Quality checks inside tasks: metric gates (``phloem.gate``), data expectations
(``phloem.expect``) and drift statistics (``phloem.drift``), with their reports kept as
artifacts of the attempt and their numbers as run metrics."""
