;; A WASI job that asks for a new directory over and over: every request counts against the entries a job
;; may create, so the run ends at the limit however many of them succeed.
(module
  (import "wasi_snapshot_preview1" "path_create_directory" (func $mkdir (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "d")
  (func (export "_start")
    (loop $again
      (drop (call $mkdir (i32.const 4) (i32.const 0) (i32.const 1)))
      (br $again))))
