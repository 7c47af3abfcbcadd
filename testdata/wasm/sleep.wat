;; A WASI job that sleeps an hour a thousand times (poll_oneoff on a relative monotonic clock), then exits
;; with the number of ten-hour spans its monotonic clock says passed (100). Sleeping must advance the job's own clock, not
;; hold the provider: the run ends at once. Exit codes 20–21 say which step failed.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    ;; One subscription at 0: userdata 7, tag 0 (clock), clock 1 (monotonic), one hour, relative.
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (loop $sleep
      (if (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200))
        (then (call $proc_exit (i32.const 20))))
      (if (i32.or (i32.ne (i32.load (i32.const 200)) (i32.const 1))
                  (i64.ne (i64.load (i32.const 100)) (i64.const 7)))
        (then (call $proc_exit (i32.const 21))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $sleep (i32.lt_u (local.get $i) (i32.const 1000))))
    (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 304)))
    (call $proc_exit
      (i32.wrap_i64 (i64.div_u (i64.load (i32.const 304)) (i64.const 36000000000000))))))
