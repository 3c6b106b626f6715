# security-chain.hcl: a security team's attachment and data-loss chain.
#
# Two listeners: the inbound MX and the submission port where employees send mail. Inbound, executables are
# stripped (the rest of the message is delivered); outbound, payment card and bank account numbers are stopped
# before they leave. The plugins are the security team's; this file is what they hand to the mail admins.

state_dir = "/var/lib/postern"

listener "smtp" "mx" {
  address  = "0.0.0.0:25"
  upstream = "10.0.0.25:25"
}

listener "submission" "submission" {
  address  = "0.0.0.0:587"
  upstream = "10.0.0.25:587"
  # Direction defaults to "outbound" for submission; users authenticate against the upstream (AUTH is relayed).
  # tls {
  #   mode = "starttls"
  #   cert = "/etc/postern/tls/smtp.example.com.crt"
  #   key  = "/etc/postern/tls/smtp.example.com.key"
  # }
}

plugin "attachment-guard" {
  source = "../build/plugins/attachment-guard.wasm"
  config = {
    action            = "strip" # remove the dangerous parts, keep the rest byte-identical, add a note
    add_extensions    = ["docm", "xlsm", "pptm", "one"]
    remove_extensions = ["iso", "img"] # the build team mails disk images; decided 2026-03 (ticket SEC-114)
    score             = 5
  }
  timeout  = "2s"
  memory   = "64MiB"
  on_error = "tempfail"
}

plugin "dlp" {
  source = "../build/plugins/dlp.wasm"
  config = {
    action          = "quarantine"
    min_matches     = 1
    score_per_match = 5
    detect          = ["cards", "ibans"]
  }
  on_error = "tempfail" # never let mail out unchecked
}

plugin "dlp-inbound" {
  source = "../build/plugins/dlp.wasm" # the same module, configured to only count what comes in
  config = { action = "tag", score_per_match = 1 }
}

# Inbound: strip executables, count numbers (customers do send their card numbers; we want to know how often).
policy "inbound-attachments" {
  when    = msg.direction == "inbound"
  plugins = ["attachment-guard", "dlp-inbound"]
}

# Outbound: the DLP plugin quarantines on any card or IBAN. The attachment guard runs first and strips; its
# score plus the DLP score decide with the thresholds when neither plugin quarantined by itself.
policy "outbound-dlp" {
  when    = msg.direction == "outbound" && !domain_match(msg.mail_from_domain, "*.payments.example.com")
  plugins = ["attachment-guard", "dlp"]
  thresholds {
    quarantine = 5
    reject     = 20
  }
  reject_code = 554
  reject_text = "Message refused by the data-loss policy; contact security@example.com"
}
