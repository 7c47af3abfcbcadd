;; A WASI job that rewrites the first MiB of /out/f forever (fd_pwrite at offset 0): its output stays small,
;; but every write is work the provider's disk does, so the bytes written are counted and the run ends at
;; the limit, on every provider at the same call. Exit code 10: the file could not be created.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 17)
  (data (i32.const 0) "f")
  (func (export "_start")
    ;; create /out/f (preopen fd 4; oflags creat|trunc = 9; rights fd_write = 64)
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 9)
          (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 16))
      (then (call $proc_exit (i32.const 10))))
    ;; one iovec at 32: 1 MiB from 65536
    (i32.store (i32.const 32) (i32.const 65536))
    (i32.store (i32.const 36) (i32.const 1048576))
    (loop $again
      (drop (call $fd_pwrite (i32.load (i32.const 16)) (i32.const 32) (i32.const 1) (i64.const 0) (i32.const 40)))
      (br $again))))
