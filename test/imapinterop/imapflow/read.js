// Reads alice's INBOX through an IMAP server with imapflow, the way imapflow-based clients sync: one FETCH 1:*
// for UID, BODYSTRUCTURE, ENVELOPE and RFC822.SIZE, then each message's source, then an APPEND to Drafts.
// Prints one JSON line: {"messages": [{uid, size, subject, partSize, length, sha256}], "append": {uid}}.
'use strict';
const crypto = require('crypto');
const { ImapFlow } = require('imapflow');

async function main() {
  const [host, port, user, pass] = process.argv.slice(2);
  const client = new ImapFlow({
    host, port: Number(port), secure: false, auth: { user, pass },
    logger: false, disableAutoIdle: true, tls: { rejectUnauthorized: false }
  });
  await client.connect();
  const out = { messages: [], append: {} };
  const lock = await client.getMailboxLock('INBOX');
  try {
    const list = [];
    for await (const m of client.fetch('1:*', { uid: true, bodyStructure: true, envelope: true, size: true })) {
      list.push({ uid: m.uid, size: m.size, subject: m.envelope.subject || '',
        partSize: m.bodyStructure.size || 0 });
    }
    for (const m of list) {
      const { content } = await client.download(String(m.uid), undefined, { uid: true });
      const chunks = [];
      for await (const c of content) chunks.push(c);
      const body = Buffer.concat(chunks);
      m.length = body.length;
      m.sha256 = crypto.createHash('sha256').update(body).digest('hex');
      out.messages.push(m);
    }
  } finally {
    lock.release();
  }
  const draft = 'From: alice@example.com\r\nTo: bob@other.test\r\nSubject: draft by imapflow\r\n\r\nLater.\r\n';
  try { await client.mailboxCreate('Drafts'); } catch (e) { /* exists */ }
  const res = await client.append('Drafts', draft, ['\\Draft']);
  out.append = { uid: res && res.uid ? res.uid : 0 };
  await client.logout();
  console.log(JSON.stringify(out));
}

main().catch(err => { console.error(err && err.stack || String(err)); process.exit(1); });
