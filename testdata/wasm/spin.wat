;; A WASI job that never ends: it runs until its fuel (or the provider's patience) runs out.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever (br $forever))))
