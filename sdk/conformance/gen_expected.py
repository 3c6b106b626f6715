#!/usr/bin/env python3
"""Regenerates expected.json for the conformance kit (see README.md).

The values are computed from testdata/conformance.eml and testdata/config.json by following the RFCs and
sdk/ABI.md directly, independently of the Go host, so the test compares the host and the SDKs against an outside
reference. Three kinds of value are written here by hand, after review: the defect texts (the host's wording),
the changes list, and the SHA-256 of testdata/expected-output.eml. Run it from this folder: python3 gen_expected.py
"""
import json, hashlib, base64, os, quopri, re
os.chdir(os.path.dirname(os.path.abspath(__file__)))
raw = open('testdata/conformance.eml','rb').read()
cfg = open('testdata/config.json','rb').read()
hx = lambda b: b.hex()
# --- index (RFC 2046: body ends before the CRLF preceding a boundary line) ---
def split_header(start, end):
    i = raw.find(b"\r\n\r\n", start, end)
    if i < 0: return (start, end), (end, end)
    return (start, i+2), (i+4, end)
parts = []
def add(pid, parent, depth, hs, he):
    (h0,h1),(b0,b1) = split_header(hs, he)
    parts.append(dict(id=pid,parent=parent,depth=depth,h=(h0,h1),b=(b0,b1)))
    return parts[-1]
p0 = add(0,-1,0,0,len(raw))
def children(b0, b1, boundary):
    """The [start, end) body ranges of the parts between the boundary lines of a multipart body."""
    delim = b"--" + boundary
    marks = []  # (line start, next line start, is the closing delimiter)
    i = b0
    while i < b1:
        j = raw.find(b"\r\n", i, b1)
        nl = b1 if j < 0 else j + 2
        j = b1 if j < 0 else j
        line = raw[i:j]
        if line in (delim, delim + b"--"):
            marks.append((i, nl, line == delim + b"--"))
        i = nl
    out = []
    for k in range(len(marks) - 1):
        out.append((marks[k][1], marks[k + 1][0] - 2))  # the CRLF before a boundary belongs to it
        if marks[k + 1][2]:
            break
    return out
# The structure is known (README.md); the offsets are computed.
ch = children(*p0['b'], b"outer")
p1 = add(1,0,1,*ch[0])
alt = children(*p1['b'], b"alt")
p2 = add(2,1,2,*alt[0]); p3 = add(3,1,2,*alt[1])
p4 = add(4,0,1,*ch[1]); p5 = add(5,0,1,*ch[2])
R = lambda p: raw[p['b'][0]:p['b'][1]]
H = lambda p: raw[p['h'][0]:p['h'][1]]
dec2 = quopri.decodestring(R(p2).replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
assert dec2 == b"Gr\xfc\xdfe aus K\xf6ln!\r\nDas geheime Wort ist swordfish, Swordfish, SWORDFISH.", dec2
text2 = dec2.decode('latin-1').encode()
text3 = R(p3)
dec4 = base64.b64decode(R(p4))
text5dec = R(p5)
pats = ["swordfish", "(?i)swordfish", "K[öo]ln"]
def matches(content, maxm=1000):
    out=[]
    txt = content.decode('utf-8')
    bo = lambda k: len(txt[:k].encode())  # character offset -> byte offset
    for i,p in enumerate(pats):
        for m in re.finditer(p, txt): out.append((bo(m.start()), i, bo(m.end())))
    out.sort()
    return [(i,s,e) for (s,i,e) in out][:maxm]
fm = lambda ms: " ".join("%d:%d-%d"%m for m in ms)
sha = lambda b: hashlib.sha256(b).hexdigest()

env = dict(protocol="submission", direction="outbound", listener="submission", ip="192.0.2.10", port="49152",
           helo="client.example.net", tlsv="TLS1.3", tlsc="TLS_AES_128_GCM_SHA256", auth="alice",
           utlsv="TLS1.2", utlsc="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
# The retrieval fixture: an IMAP FETCH. No envelope (mail_from, rcpt, client.helo unavailable), a mailbox instead.
renv = dict(protocol="imap", direction="retrieval", listener="imap", ip="192.0.2.20", port="49153",
            tlsv="TLS1.3", tlsc="TLS_AES_128_GCM_SHA256", auth="alice", utlsv="TLS1.2",
            utlsc="TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", user="alice", mailbox="INBOX/Ärchiv", uid="4242",
            uidvalidity="1700000000", date="2025-11-24T10:00:05Z", flags=["\\Seen", "$Label1"], command="fetch")
UN="-3"; NF="-1"; INV="-2"; DEC="-4"
def common(hook, mail_from, smtputf8, rcpts, current, size, malformed, e=env, helo=None, auth=None, mailbox=None,
           ambiguous=None, limit=None):
    """The checks of every hook. helo and auth are the values of client.helo and auth.user at this hook (UN when
    not known yet); mailbox holds the retrieval fields, None for SMTP (all unavailable)."""
    mb = mailbox or {}
    return {
      "init.config": "ok", "init.patterns": "ok", "init.pattern_invalid": INV,
      "config.greeting": "Grüezi, kit", "config.len": str(len(cfg)),
      "field.hook": hook, "field.protocol": e['protocol'], "field.direction": e['direction'],
      "field.listener": e['listener'], "field.client.ip": e['ip'], "field.client.port": e['port'],
      "field.client.helo": helo or UN, "field.tls.version": e['tlsv'], "field.tls.cipher": e['tlsc'],
      "field.upstream.tls.version": e['utlsv'], "field.upstream.tls.cipher": e['utlsc'],
      "field.auth.user": auth or UN, "field.mail_from": mail_from, "field.smtputf8": smtputf8,
      "field.rcpt": ",".join(rcpts) if isinstance(rcpts, list) else rcpts,
      "field.rcpt.count": str(len(rcpts)) if isinstance(rcpts, list) else rcpts,
      "field.rcpt.current": current, "field.message.size": size, "field.message.malformed": malformed,
      "field.message.ambiguous": ambiguous if ambiguous is not None else malformed,
      "field.message.limit_exceeded": limit if limit is not None else (UN if malformed == UN else ""),
      "field.mailbox.user": mb.get("user", UN), "field.mailbox.name": mb.get("mailbox", UN),
      "field.message.uid": mb.get("uid", UN), "field.message.uidvalidity": mb.get("uidvalidity", UN),
      "field.message.uidl": mb.get("uidl", UN), "field.message.internal_date": mb.get("date", UN),
      "field.message.flags": ",".join(mb["flags"]) if "flags" in mb else UN, "field.command": mb.get("command", UN),
      "field.unknown": NF, "field.past_end": NF,
    }
unavail = {k: UN for k in ["unavail.header_get","unavail.header_all","unavail.part_count","unavail.part_field",
  "unavail.part_read","unavail.message_read","unavail.part_match","unavail.part_sha256","unavail.header_add",
  "unavail.header_set","unavail.header_remove","unavail.subject_prefix","unavail.banner_add","unavail.part_remove",
  "unavail.part_replace"]}
hooks = {}
# At connect nothing of the session is known yet: no HELO, no authenticated user, no envelope (rcpt is
# unavailable, not an empty list).
c = common("connect", UN, UN, UN, UN, UN, UN); c.update(unavail); c["change.rcpt_add"] = UN
hooks["connect"] = dict(tags=c, verdict=dict(kind="accept",code=0,enhanced="",text=""), score=0, changes=[], logs=[])
S = dict(helo=env['helo'], auth=env['auth'])
m = common("mail_from", "sender@example.org", "1", [], UN, UN, UN, **S); m.update(unavail); m["change.rcpt_add"]="0"; m["verdict.tempfail"]="0"
hooks["mail_from"] = dict(tags=m, verdict=dict(kind="tempfail",code=451,enhanced="4.7.1",text="greylisted"), score=0,
  changes=[{"op":"add_recipient","value":"dave@example.net"}], logs=[])
r = common("rcpt_to", "sender@example.org", "1", ["alice@example.com"], "bob@example.com", UN, UN, **S); r.update(unavail)
r["change.rcpt_add"]="0"; r["verdict.reject"]="0"; r["score.add"]="0"
hooks["rcpt_to"] = dict(tags=r, verdict=dict(kind="reject",code=550,enhanced="5.1.1",text="no such user"), score=0.5,
  changes=[{"op":"add_recipient","value":"erin@example.net"}], logs=[])
D4 = 'bad-header: part 4 names its file both "résumé.pdf" and "ignored.pdf"; "résumé.pdf" is used'
D5 = 'unknown-charset: part 5: unknown charset "x-unknown-charset"'
# The 8-bit header carries a Latin-1 byte, which is not UTF-8: header_get returns the bytes as they are, and the
# host flags the field (the offset is the field's, in the message).
D0 = 'bad-header: field X-Eight-Bit (offset %d) contains 8-bit bytes that are not UTF-8' % raw.find(b"X-Eight-Bit:")
MALFORMED = D0 + "," + D4 + "," + D5
# Mail clients disagree which of part 4's two names is its file name: the host keeps both and says so.
AMBIGUOUS = 'conflicting-names: part 4 names its file "résumé.pdf", "ignored.pdf"'
t = common("message", "sender@example.org", "1", ["alice@example.com","bob@example.com"], UN, str(len(raw)), MALFORMED, **S, ambiguous=AMBIGUOUS)
msgchecks = {
 "header.subject": "=?iso-8859-1?q?Gr=FC=DFe?= aus =?utf-8?b?S8O2bG4=?=",
 "header.subject.decoded": "Grüße aus Köln",
 "header.subject.case": "Grüße aus Köln",
 "header.from.decoded": "Jörg <joerg@example.org>",
 "header.x-multi.0": "first", "header.x-multi.1": "second", "header.x-multi.2": NF, "header.x-multi.count": "2",
 "header.x-folded": "one two",
 "header.x-eight-bit.hex": hx(re.search(rb"\r\nX-Eight-Bit: ([^\r]*)\r\n", raw).group(1)),
 "header.missing": NF, "header.bad_name": INV, "header.bad_part": INV,
 "header.2.content-type": "text/plain; charset=iso-8859-1",
 "header_all.0.len": str(len(H(p0))), "header_all.2.hex": hx(H(p2)), "header_all.bad_part": INV,
 "part.count": "6",
}
fn = {0:"",1:"",2:"",3:"",4:"résumé.pdf",5:"notizé.txt"}
ct = {0:"multipart/mixed",1:"multipart/alternative",2:"text/plain",3:"text/html",4:"application/pdf",5:"text/plain"}
cs = {0:"",1:"",2:"iso-8859-1",3:"utf-8",4:"",5:"x-unknown-charset"}
enc = {0:"7bit",1:"7bit",2:"quoted-printable",3:"7bit",4:"base64",5:"7bit"}
disp = {4:"attachment"}
for p in parts:
    i=p['id']
    msgchecks["part.%d.parent"%i]=str(p['parent']); msgchecks["part.%d.depth"%i]=str(p['depth'])
    msgchecks["part.%d.content_type"%i]=ct[i]; msgchecks["part.%d.charset"%i]=cs[i]; msgchecks["part.%d.encoding"%i]=enc[i]
    msgchecks["part.%d.disposition"%i]=disp.get(i,""); msgchecks["part.%d.filename"%i]=fn[i]; msgchecks["part.%d.size"%i]=str(len(R(p)))
    msgchecks["part.%d.multipart"%i]="1" if i in (0,1) else "0"; msgchecks["part.%d.defects"%i]= {0: D0, 4: D4, 5: D5}.get(i, "")
msgchecks.update({
 "part_field.unknown": NF, "part_field.bad_part": INV, "part_field.negative": INV,
 "part_read.2.raw.len": str(len(R(p2))), "part_read.2.decoded.len": str(len(dec2)), "part_read.2.text.len": str(len(text2)),
 "part_read.2.decoded.hex": hx(dec2), "part_read.2.text.hex": hx(text2),
 "part_read.2.text.window": hx(text2[6:11]), "part_read.2.text.window.total": str(len(text2)),
 "part_read.2.text.past_end": str(len(text2)),
 "part_read.4.raw.len": str(len(R(p4))), "part_read.4.decoded.len": str(len(dec4)), "part_read.4.decoded.head": hx(dec4[:8]),
 "part_read.0.raw.len": str(len(R(p0))), "part_read.0.raw.head": hx(R(p0)[:16]),
 "part_read.1.decoded": INV, "part_read.bad_mode": INV, "part_read.bad_part": INV,
 "part_read.5.text": DEC, "part_read.5.decoded.hex": hx(text5dec),
 "stream.3.text": hx(text3), "text.3": text3.decode(),
 "message_read.len": str(len(raw)), "message_read.head": hx(raw[:16]), "message_read.window": hx(raw[100:116]),
 "message_read.past_end": str(len(raw)),
 "match.2.text": fm(matches(text2)), "match.2.text.count": str(len(matches(text2))), "match.2.text.max2": fm(matches(text2,2)),
 "match.2.text.first": text2[matches(text2)[0][1]:matches(text2)[0][2]].decode(),
 "match.3.text": fm(matches(text3)), "match.0.raw.count": str(len(matches(R(p0)))),
 "match.1.decoded": INV, "match.bad_handle": INV, "match.5.text": DEC,
 "sha256.4.decoded": sha(dec4), "sha256.2.text": sha(text2), "sha256.0.raw": sha(R(p0)),
 "sha256.1.decoded": INV, "sha256.5.text": DEC,
 "verdict.reject.bad_code": INV, "verdict.reject.bad_enh": INV, "verdict.tempfail.crlf": INV, "verdict.text.long": INV,
 "verdict.reject": "0", "verdict.discard": "0", "verdict.accept": "0", "verdict.quarantine": "0",
 "tag.bad_key": INV, "tag.long_key": INV, "tag.long_value": INV, "tag.replaced": "second",
 "score.add": "0", "score.nan": INV, "score.inf": INV,
 "change.header_add": "0", "change.header_set": "0", "change.header_remove": "0", "change.subject_prefix": "0",
 "change.banner_add": "0", "change.part_replace": "0", "change.part_remove": "0", "change.rcpt_add": "0",
 "change.header_add.crlf": INV, "change.header_add.bad_name": INV, "change.header_set.nul": INV,
 "change.part_remove.root": INV, "change.part_remove.bad_part": INV, "change.part_replace.multipart": INV,
 "change.rcpt_add.bad": INV,
})
t.update(msgchecks)
REPL = b"replaced by the conformance kit"
hooks["message"] = dict(tags=t, verdict=dict(kind="quarantine",code=0,enhanced="",text="conformance kit"), score=1.25,
  changes=[{"op":"add_header","name":"X-Conformance","value":"kit"},
           {"op":"set_header","name":"X-Multi","value":"replaced"},
           {"op":"remove_header","name":"X-Folded"},
           {"op":"prefix_subject","value":"[kit] "},
           {"op":"append_banner","value":"Scanned by Postern.","html":"<p>Scanned by Postern.</p>"},
           {"op":"replace_part","part":4,"content_type":"text/plain","size":len(REPL)},
           {"op":"remove_part","part":5},
           {"op":"add_recipient","value":"carol@example.net"}],
  logs=[["debug","kit debug"],["info","kit info"],["warn","kit warn"],["error","kit error"],["error","kit clamped"]],
  output_sha256="1faa00999ab8829f1fb85d9505c84f5a13d7ebd57d5aac27c8fe76b9fae47221")
OUTPUT_SHA256 = hooks["message"]["output_sha256"]

# The retrieval fixture: connect, then the message read with IMAP FETCH. rcpt_add has no envelope to add to.
rhooks = {}
rc = common("connect", UN, UN, UN, UN, UN, UN, e=renv); rc.update(unavail); rc["change.rcpt_add"] = UN
rhooks["connect"] = dict(tags=rc, verdict=dict(kind="accept",code=0,enhanced="",text=""), score=0, changes=[], logs=[])
rt = common("message", UN, UN, UN, UN, str(len(raw)), MALFORMED, e=renv, auth=renv['auth'], mailbox=renv,
           ambiguous=AMBIGUOUS)
rt.update(msgchecks); rt["change.rcpt_add"] = UN; rt["change.rcpt_add.bad"] = UN
rhooks["message"] = dict(tags=rt, verdict=hooks["message"]["verdict"], score=1.25,
  changes=[c for c in hooks["message"]["changes"] if c["op"] != "add_recipient"],
  logs=hooks["message"]["logs"], output_sha256=OUTPUT_SHA256)

for h in list(hooks.values()) + list(rhooks.values()):
    assert len(h['tags']) <= 256, len(h['tags'])
    for k,v in h['tags'].items():
        assert re.fullmatch(r'[A-Za-z0-9_.-]{1,64}', k), k
        assert len(v.encode()) <= 1024, k
doc = {"abi_version": 1, "message": "testdata/conformance.eml", "config": "testdata/config.json",
       "patterns": pats, "fixtures": {"submission": {"hooks": hooks}, "retrieval": {"hooks": rhooks}}}
json.dump(doc, open('expected.json','w'), ensure_ascii=False, indent=1, sort_keys=False)
open('expected.json','a').write('\n')
