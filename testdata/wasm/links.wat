;; A WASI job that tries to leave a symbolic link to the provider's files in its outputs, then exits with
;; the error path_symlink gave (58, not supported, when links are refused).
(module
  (import "wasi_snapshot_preview1" "path_symlink" (func $symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "../../secret")
  (data (i32.const 100) "link")
  (func (export "_start")
    (call $proc_exit (call $symlink (i32.const 0) (i32.const 12) (i32.const 4) (i32.const 100) (i32.const 4)))))
