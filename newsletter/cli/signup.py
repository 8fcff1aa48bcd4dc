"""`newsletter form`: the sign-up form's HTML, to paste into the newsroom's own site."""

from __future__ import annotations

import time

import click

from newsletter.errors import UsageError

from . import get_settings


@click.command("form")
@click.option("--list", "list_names", multiple=True, required=True,
              help="A public list the form subscribes to (repeat for checkboxes).")
@click.pass_context
def form_cmd(ctx: click.Context, list_names: tuple[str, ...]) -> None:
    """Print an HTML sign-up form posting to `newsletter serve`'s /subscribe.

    The lists must be in `public_lists`. The snippet carries the honeypot field and a
    signed stamp valid for a year: make a new snippet within a year.

    Example: newsletter form --list daily > signup-form.html
    """
    from jinja2 import Environment

    from newsletter.audience import tokens
    from newsletter.config import require
    from newsletter.web.signup import SNIPPET

    settings = get_settings(ctx)
    require(settings, "base_url", "secret_key", purpose="`newsletter form`")
    for name in list_names:
        if name not in settings.public_lists:
            raise UsageError(f"list {name!r} is not public: add it to public_lists in "
                             f"{settings.config_file} (public_lists = [\"{name}\"])")
    stamp = tokens.sign(SNIPPET, settings, int(time.time()))
    html = Environment(autoescape=True).from_string(SNIPPET_HTML).render(
        action=f"{settings.base_url}/subscribe", lists=list_names, stamp=stamp,
        consent=settings.signup_consent_text, name=settings.name)
    click.echo(html)


SNIPPET_HTML = """\
<form class="newsletter-signup" method="post" action="{{ action }}" accept-charset="utf-8">
  <label for="nl-email">Email address</label>
  <input id="nl-email" name="email" type="email" required autocomplete="email" maxlength="320">
  <label for="nl-name">Name (optional)</label>
  <input id="nl-name" name="name" type="text" autocomplete="name" maxlength="200">
{% if lists|length > 1 %}
  <fieldset><legend>Newsletters</legend>
{% for list in lists %}
    <label><input type="checkbox" name="list" value="{{ list }}"> {{ list }}</label>
{% endfor %}
  </fieldset>
{% else %}
  <input type="hidden" name="list" value="{{ lists[0] }}">
{% endif %}
  <label><input type="checkbox" name="consent" value="yes" required> {{ consent }}</label>
  <div style="position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden" aria-hidden="true">
    <label for="nl-website">Leave this empty</label>
    <input id="nl-website" name="website" type="text" tabindex="-1" autocomplete="off">
  </div>
  <input type="hidden" name="ts" value="{{ stamp }}">
  <button type="submit">Subscribe to {{ name }}</button>
</form>"""
