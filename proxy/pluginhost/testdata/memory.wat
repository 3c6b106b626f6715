;; memory: the message hook grows memory page by page until the limit refuses, then traps as a C guest whose
;; malloc failed would; mail_from grows memory by 20 pages (1.25 MiB) and succeeds (recycling); connect succeeds.
(module
  (memory (export "memory") 1)
  (func (export "postern_abi_version") (result i32) i32.const 1)
  (func (export "postern_on_connect") (result i32) i32.const 0)
  (func (export "postern_on_mail_from") (result i32)
    (drop (memory.grow (i32.const 20)))
    i32.const 0)
  (func (export "postern_on_message") (result i32)
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
