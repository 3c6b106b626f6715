;; abiv2import: built for a future ABI: imports from module postern_v2.
(module
  (import "postern_v2" "header_get" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 2)
  (func (export "postern_on_message") (result i32) i32.const 0))
