;; A WASI job that sizes /out/big to a terabyte (a sparse file costs no disk, but reading it back would take
;; the provider's memory): a file past the output limit ends the run. Exit code 10: the file could not be
;; created; 11: sizing it failed without ending the run.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "big")
  (func (export "_start")
    ;; rights fd_filestat_set_size = 1 << 22
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 9)
          (i64.const 4194368) (i64.const 0) (i32.const 0) (i32.const 16))
      (then (call $proc_exit (i32.const 10))))
    (drop (call $set_size (i32.load (i32.const 16)) (i64.const 1099511627776)))
    (call $proc_exit (i32.const 11))))
