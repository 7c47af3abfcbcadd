;; A WASI job that tries to read outside its directory: ../secret relative to /in, then /etc/passwd.
;; Exits 0 if both were refused, 1 if either opened (a sandbox escape).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "../secret")
  (data (i32.const 220) "../../../../../../etc/passwd")
  (data (i32.const 300) "refused\n")
  (func (export "_start")
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 9) (i32.const 0)
          (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
      (then (call $proc_exit (i32.const 1))))
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0) (i32.const 220) (i32.const 28) (i32.const 0)
          (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
      (then (call $proc_exit (i32.const 1))))
    (i32.store (i32.const 0) (i32.const 300))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))
