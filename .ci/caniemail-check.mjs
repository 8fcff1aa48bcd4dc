// Check email HTML against caniemail data: node .ci/caniemail-check.mjs FILE.html...
// Prints JSON: {"FILE": [{"client", "level": "error"|"warning", "title", "notes"}...]}.
// The clients are the ones templates/COMPATIBILITY.md covers.
import { readFileSync } from 'node:fs';
import { caniemail } from 'caniemail';

const CLIENTS = [
  'gmail.desktop-webmail', 'gmail.android', 'gmail.ios',
  'outlook.windows', 'outlook.macos', 'outlook.outlook-com',
  'apple-mail.macos', 'apple-mail.ios',
  'yahoo.desktop-webmail', 'yahoo.ios', 'yahoo.android',
];

const out = {};
for (const file of process.argv.slice(2)) {
  const html = readFileSync(file, 'utf8');
  const result = caniemail({ clients: CLIENTS, html });
  const found = [];
  for (const [level, map] of [['error', result.issues.errors], ['warning', result.issues.warnings]]) {
    for (const [client, list] of map) {
      for (const issue of list) {
        const notes = Array.isArray(issue.notes) ? issue.notes : (issue.notes ? [String(issue.notes)] : []);
        found.push({ client, level, title: issue.title, notes });
      }
    }
  }
  out[file] = found;
}
process.stdout.write(JSON.stringify(out));
