"""kill -9 mid-send on the SES, Postmark and Mailgun backends (test_send_crash's pattern).

A send of 2,000 recipients to each provider's stand-in is killed six times at random
moments and resumed; then: nobody received a message twice, everyone recorded sent
received exactly one, and the uncertain are bounded by what was in flight at each kill
(SES, Postmark and Mailgun: one request of a batch per worker: a SendBulkEmail call of up
to 50 entries for SES, a single message on its raw path).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.delivery import ledger

from .mailgun_standin import MailgunStandIn
from .postmark_standin import PostmarkStandIn
from .sendtools import make_project, seed
from .ses_standin import KEY_ID, SECRET, SESStandIn
from .test_send_crash import (
    WORKERS,
    _assert_per_kill,
    _final_run,
    _kill_loop,
    _nobody_twice,
    _send_id,
)

pytestmark = pytest.mark.slow
RECIPIENTS = 2000
KILLS = 6
BATCH = 50


def _ses(standin: SESStandIn) -> dict[str, str]:
    return {"NEWSLETTER_BACKEND": "ses", "NEWSLETTER_SES_REGION": "eu-west-1",
            "NEWSLETTER_SES_ENDPOINT_URL": standin.url, "AWS_ACCESS_KEY_ID": KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def _ses_raw(standin: SESStandIn) -> dict[str, str]:
    return {**_ses(standin), "NEWSLETTER_SES_SEND_MODE": "raw"}


def _postmark(standin: PostmarkStandIn) -> dict[str, str]:
    return {"NEWSLETTER_BACKEND": "postmark", "NEWSLETTER_POSTMARK_API_HOST": standin.url,
            "POSTMARK_SERVER_TOKEN": standin.api_key, "NEWSLETTER_SEND_BATCH_SIZE": str(BATCH)}


def _mailgun(standin: MailgunStandIn) -> dict[str, str]:
    return {"NEWSLETTER_BACKEND": "mailgun", "NEWSLETTER_MAILGUN_API_HOST": standin.url,
            "NEWSLETTER_MAILGUN_DOMAIN": standin.domain, "MAILGUN_API_KEY": standin.api_key,
            "NEWSLETTER_SEND_BATCH_SIZE": str(BATCH)}


CASES: dict[str, tuple[Callable, Callable, float, int]] = {
    # name: (stand-in, its environment, its answer delay, uncertain per worker per kill)
    "ses": (SESStandIn, _ses, 0.15, BATCH),  # SendBulkEmail: 50 entries a call
    "ses-raw": (SESStandIn, _ses_raw, 0.01, 1),
    "postmark": (PostmarkStandIn, _postmark, 0.15, BATCH),
    "mailgun": (MailgunStandIn, _mailgun, 0.15, BATCH),
}


@pytest.mark.parametrize("name", list(CASES))
def test_kill_9_leaves_no_duplicates_and_bounded_uncertain(tmp_path: Path, name: str) -> None:
    make_standin, environment, delay, per_worker = CASES[name]
    rng = random.Random(18 + len(name))
    with make_standin(record="counts") as standin:
        standin.delay(delay)
        project = tmp_path / "p"
        engine = seed(make_project(project), RECIPIENTS)
        env = environment(standin)
        per_kill: list[tuple[int, int]] = []
        kills = _kill_loop(project, env, rng, standin.counts, window=0.2, engine=engine,
                           per_kill=per_kill, kills=KILLS)
        assert kills == KILLS, "a send finished before the kills: make it longer"
        _assert_per_kill(per_kill, per_worker)
        _nobody_twice(engine, standin.counts)
        _final_run(project, env)
        send_id = _send_id(engine)
        send = ledger.get_send(engine, send_id)
        assert send.status == "finished" and send.total == RECIPIENTS, send.counts
        sent = {r.email for r in ledger.recipients(engine, send_id, ["sent"], limit=None)}
        uncertain = {r.email for r in ledger.recipients(engine, send_id, ["uncertain"],
                                                        limit=None)}
        assert len(sent) + len(uncertain) == RECIPIENTS, send.counts
        assert max(standin.counts.values()) == 1  # nobody twice
        assert [email for email in sent if standin.counts[email] != 1] == []
        assert len(uncertain) <= KILLS * WORKERS * per_worker
        print(f"\n{name}: {kills} kills, {len(sent)} sent, {len(uncertain)} uncertain")
        engine.dispose()
