;; mask: exports all four hooks (as an SDK must) but postern_hooks enables only message (0x8). Every hook returns
;; 5, so running a masked one would be a failure.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_hooks") (result i32) i32.const 0x8)
  (func (export "postern_on_connect") (result i32) i32.const 5)
  (func (export "postern_on_mail_from") (result i32) i32.const 5)
  (func (export "postern_on_rcpt_to") (result i32) i32.const 5)
  (func (export "postern_on_message") (result i32) i32.const 0))
