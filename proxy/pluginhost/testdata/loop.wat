;; loop: the message hook never returns (the call's timeout must stop it); connect succeeds.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32) i32.const 0)
  (func (export "postern_on_message") (result i32)
    (loop $forever (br $forever))
    i32.const 0))
