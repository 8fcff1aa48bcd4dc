// The reference MJML compiler (npm mjml): MJML on stdin, HTML on stdout.
// Used by tests/test_compat.py to compare Outlook table widths with mjml-python's.
import mjml2html from 'mjml';

let source = '';
process.stdin.setEncoding('utf8');
for await (const chunk of process.stdin) source += chunk;
const result = mjml2html(source, { validationLevel: 'soft', fonts: {}, keepComments: false });
for (const error of result.errors) process.stderr.write(`${error.formattedMessage}\n`);
process.stdout.write(result.html);
