"""Jobs: what one cube task at one site is (:mod:`.job`), the one factory that makes submissions' jobs
(:mod:`.factory`), how a job is executed anywhere (:mod:`.execute`: runtime, bind, launch, guards, record),
the machine's resources a job holds (:mod:`.resources`) and the diagnosis of known failures (:mod:`.diagnose`).
Executors sit above this package and the pipeline above them."""
