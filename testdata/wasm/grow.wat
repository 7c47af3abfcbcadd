;; A WASI job that asks for 64 MiB more memory: exits 3 if refused (past its cap), 0 if granted.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 1024)) (i32.const -1))
      (then (call $proc_exit (i32.const 3))))))
