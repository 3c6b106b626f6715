# demo.hcl: the configuration `make run` starts.
#
# An SMTP listener on 127.0.0.1:2525 and a submission listener on 127.0.0.1:2587, both with STARTTLS, whose
# upstream is the embedded server (it stores every message it receives as an .eml file and knows two test users,
# alice@example.com and bob@example.com), a POP3 listener on 127.0.0.1:2110 and an IMAP listener on 127.0.0.1:2143
# that serve those files back, and the first-party plugins built by `make plugins`. Try it:
#
#   make run
#   swaks --server 127.0.0.1:2525 --from someone@other.test --to alice@example.com   # tagged as external
#   swaks --server 127.0.0.1:2587 --tls --auth-user alice@example.com --auth-password alice-test-password \
#     --from alice@example.com --to someone@other.test
#   postern explain -config policies/demo.hcl -from a@other.test -rcpt alice@example.com some.eml
#
# Paths are relative to this file.

state_dir = "../build/state" # compilation cache, quarantine, control socket (postern reload)

audit {
  path          = "../build/state/audit.log"
  max_bytes     = "64MiB"
  sync_interval = "1s"
}

# The admin HTTP listener: health checks for a load balancer, metrics, and the reviewer pages at
# http://127.0.0.1:8025/ (add a user first: postern review adduser -config policies/demo.hcl -role reviewer NAME).
#
#   curl -s http://127.0.0.1:8025/readyz
admin {
  address = "127.0.0.1:8025"
  review {
    users_file = "../build/state/reviewers"
  }
}

listener "smtp" "demo" {
  address  = "127.0.0.1:2525"
  upstream = "embedded"
  # The demo shows what Postern did in the stored messages; in production leave these off so that mail no
  # plugin changed is delivered byte-for-byte as received.
  result_headers  = true
  received_header = true
  limits {
    message_size = "25MiB"
    recipients   = 50
  }
  # A self-signed certificate made at the first start in state_dir/tls, for trying STARTTLS. TEST ONLY: no
  # client can verify it; in production give cert and key instead.
  tls {
    test_certificate = true
  }
}

# Submission (mail from your own users): AUTH is relayed to the embedded upstream's test users, and offered only
# after STARTTLS.
listener "submission" "submission" {
  address  = "127.0.0.1:2587"
  upstream = "embedded"
  result_headers  = true
  received_header = true
  tls {
    test_certificate = true
  }
}

# A POP3 listener in front of the embedded maildrop: it serves the messages the SMTP listener above stored, and
# every message read passes the retrieval policy first. Any user name and password log in (the embedded
# maildrop is a demo); passwords in plain text are allowed because it listens on the loopback only.
#
#   curl -s pop3://demo:demo@127.0.0.1:2110/        # the listing: number and exact size of each message
#   curl -s pop3://demo:demo@127.0.0.1:2110/1       # the first message, as a mail client gets it
listener "pop3" "demo-pop3" {
  address             = "127.0.0.1:2110"
  upstream            = "embedded"
  allow_insecure_auth = true
}

# An IMAP listener in front of the embedded mailbox: INBOX holds the messages the SMTP listener above stored, and
# Drafts, Sent and Trash what clients store there (an APPEND passes the policy as outbound mail). Every message
# read passes the retrieval policy first, and every FETCH item (size, structure, sections) is answered from the
# filtered bytes. Any user name and password log in; plain-text passwords are allowed on the loopback only.
#
#   curl -s imap://demo:demo@127.0.0.1:2143/INBOX -X 'UID FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])'
#   curl -s 'imap://demo:demo@127.0.0.1:2143/INBOX;UID=1'   # the first message, as a mail client gets it
listener "imap" "demo-imap" {
  address             = "127.0.0.1:2143"
  upstream            = "embedded"
  allow_insecure_auth = true
}

plugin "eicar" {
  source = "../build/plugins/eicar.wasm"
}

plugin "attachment-guard" {
  source = "../build/plugins/attachment-guard.wasm"
  config = { action = "reject" }
}

# Holds a message for review; the policy "suspect-structure" below says which.
plugin "hold" {
  source = "../build/plugins/verdict.wasm"
  config = { action = "quarantine", text = "held: ambiguous or malformed MIME with attachments" }
}

plugin "external-tag" {
  source = "../build/plugins/external-tag.wasm"
  config = { internal_domains = ["example.com"] }
}

plugin "dlp" {
  source = "../build/plugins/dlp.wasm"
  config = { action = "tag", score_per_match = 2 }
}

# Malware first: a message carrying the EICAR test file or an executable is refused, and nothing else runs. It
# applies to POP3 reads too: a message stored before a rule or signature existed is withheld when it is read (the
# client gets a notice, the original goes to the quarantine).
policy "malware" {
  plugins = ["eicar", "attachment-guard"]
}

# Then a message that carries attachments and that mail clients may read differently from the host (two file
# names, two boundaries, base64 that goes on after its padding, ...) or that is malformed is quarantined: a
# filter can only vouch for what it read the way the recipient's client will. Mail from broken mailers lands
# in quarantine too; see docs/CONFIG.md, "Ambiguous and malformed mail", before relaxing this.
policy "suspect-structure" {
  when    = msg.attachments > 0 && (length(msg.ambiguous) > 0 || length(msg.malformed) > 0)
  plugins = ["hold"]
}

# Then every message gets the external warning, and card/IBAN numbers add to the score: three distinct numbers
# (score 6) quarantine the message.
policy "content" {
  # Marking happens once, when the message arrives, not again each time it is read.
  when    = msg.direction != "retrieval"
  plugins = ["external-tag", "dlp"]
  thresholds {
    quarantine = 6
  }
}
