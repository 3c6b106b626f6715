# inbound-mx.hcl: an admin's inbound MX.
#
# Postern listens on port 25 in front of the organisation's Postfix, which keeps doing what it does (relay
# checks, delivery); Postern adds content filtering. Mail for example.com and example.org arrives here from the
# internet, and from two internal relays that are trusted.
#
# It loads the C plugin header-sanity, which `make run` does not build. From the checkout:
#
# Build its plugins:  make plugins
# Check it with:      build/postern check -config policies/inbound-mx.hcl
# Test a change:      build/postern explain -config policies/inbound-mx.hcl -listener mx -from x@other.test \
#                         -rcpt alice@example.com -client-ip 203.0.113.9 message.eml

state_dir = "/var/lib/postern"

audit {
  path          = "/var/log/postern/audit.log"
  max_bytes     = "256MiB" # then the file is rotated; `postern audit verify` checks the chain across files
  sync_interval = "1s"     # fsync at most once a second; "0s" syncs every record
}

listener "smtp" "mx" {
  address  = "0.0.0.0:25"
  upstream = "10.0.0.25:25" # Postfix on the mail host

  # Client-side TLS. Uncomment with your certificate (postern check loads the pair, so a wrong path or a key
  # that does not match the certificate is found before a restart):
  # tls {
  #   mode = "starttls"
  #   cert = "/etc/postern/tls/mx.example.com.crt"
  #   key  = "/etc/postern/tls/mx.example.com.key"
  # }

  # The hop to Postfix runs inside the data centre; use "starttls" (and ca_file) if it does not.
  upstream_tls {
    mode = "none"
  }

  limits {
    message_size    = "50MiB"
    sessions        = 2000
    recipients      = 100
    command_timeout = "5m"
    idle_timeout    = "5m"
    errors          = 10
  }

  # Postfix sees the real client (for its own RBL and SPF checks) instead of Postern's address.
  # It needs `smtpd_authorized_xclient_hosts = <postern's address>` in Postfix's main.cf.
  xclient = true

  # Bare CR or LF in DATA is how SMTP smuggling starts: refuse it.
  bare_newline = "reject"
}

plugin "eicar" {
  source = "../build/plugins/eicar.wasm"
  # Pin the module once it is deployed: a changed file then refuses to load instead of running unreviewed code.
  # sha256 = "<output of sha256sum eicar.wasm>"
}

plugin "attachment-guard" {
  source = "../build/plugins/attachment-guard.wasm"
  config = {
    action         = "reject"
    add_extensions = ["docm", "xlsm", "one"] # macro documents and OneNote: refused at this site
  }
  on_error = "tempfail" # a broken plugin delays mail (the sender retries) rather than letting it through
}

plugin "header-sanity" {
  source = "../build/plugins/header-sanity.wasm"
  config = { reject_multiple_from = true }
}

plugin "external-tag" {
  source = "../build/plugins/external-tag.wasm"
  config = {
    internal_domains = ["example.com", "example.org"]
    subject_prefix   = "[EXTERNAL] "
  }
}

# 1. Malware, for everyone. No `when`: it applies to every message.
policy "malware" {
  plugins = ["eicar", "attachment-guard"]
}

# 2. Header sanity scores spam-like messages from the internet. Mail from the internal relays is not scored.
#    Scores add up along the chain; the highest threshold reached decides.
policy "header-score" {
  when    = !cidrmatch(msg.client_ip, "10.0.0.0/8", "192.0.2.10")
  plugins = ["header-sanity"]
  thresholds {
    tag        = 2 # adds "X-Spam-Flag: header-score; score=2" for the users' mail rules
    quarantine = 4
  }
  tag_header = "X-Spam-Flag"
}

# 3. Warn readers about mail from outside.
policy "external" {
  when    = msg.direction == "inbound"
  plugins = ["external-tag"]
}
