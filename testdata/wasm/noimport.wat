;; A module that imports a WASI function that does not exist: it can never start, so a provider must find
;; out before it confirms the job.
(module
  (import "wasi_snapshot_preview1" "no_such_call" (func $nope))
  (memory (export "memory") 1)
  (func (export "_start") (call $nope)))
