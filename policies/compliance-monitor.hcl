# compliance-monitor.hcl: a compliance team's monitor-mode policy.
#
# Monitor mode runs the plugins exactly as enforcement would and records what would have happened (in the audit
# log and in `postern explain`), but changes nothing: no rejection, no quarantine, no header. Use it to measure a
# rule on real traffic before enforcing it, or to keep a record of matches that must never block mail.
#
#   postern explain -config policies/compliance-monitor.hcl -from cfo@example.com -rcpt x@partner.test msg.eml
#
# shows "[monitor: not enforced]" next to the would-be action.

state_dir = "/var/lib/postern"

audit {
  path          = "/var/log/postern/audit.log"
  sync_interval = "0s" # every record on disk before the reply: compliance wants no gap after a crash
}

listener "smtp" "mx" {
  address  = "0.0.0.0:25"
  upstream = "10.0.0.25:25"
}

# Mail read over IMAP, filtered at retrieval, needs the IMAP proxy, which this version of Postern does not have
# (`postern check` refuses an imap listener). With it, this listener in front of the mail store makes the
# macro-preview policy below apply:
#
# listener "imap" "mailstore" {
#   address  = "0.0.0.0:143"
#   upstream = "10.0.0.30:143"
# }

plugin "dlp" {
  source = "../build/plugins/dlp.wasm"
  config = { action = "quarantine", score_per_match = 1 }
}

plugin "attachment-guard" {
  source = "../build/plugins/attachment-guard.wasm"
  config = { action = "tag", add_extensions = ["docm", "xlsm"], score = 1 }
}

# What would a card/IBAN rule do to mail leaving for external domains? Recorded, not enforced.
policy "dlp-preview" {
  mode    = "monitor"
  when    = msg.direction == "outbound" || !domain_match(msg.from_domain, ["example.com", "*.example.com"])
  plugins = ["dlp"]
  thresholds {
    tag        = 1
    quarantine = 3
  }
}

# Macro documents in mail our users submit: how many would lose an attachment if we enforced?
policy "macro-preview" {
  mode    = "monitor"
  when    = msg.protocol == "submission"
  plugins = ["attachment-guard"]
  thresholds {
    reject = 1
  }
}
