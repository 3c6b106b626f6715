;; empty: every hook returns 0 at once. The baseline of BenchmarkCallEmpty and of the pool tests.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32) i32.const 0)
  (func (export "postern_on_mail_from") (result i32) i32.const 0)
  (func (export "postern_on_rcpt_to") (result i32) i32.const 0)
  (func (export "postern_on_message") (result i32) i32.const 0))
