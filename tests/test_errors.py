"""One exception tree (newsletter/errors.py), and no failure swallowed without a reason."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import newsletter
from newsletter import errors
from newsletter.cli import main
from newsletter.errors import NewsletterError

PACKAGE = Path(newsletter.__file__).resolve().parent
#: exception classes allowed outside errors.py, with the reason
PRIVATE = {
    "newsletter.delivery.backends.smtp._Retry": "control flow inside SmtpBackend.send_batch: raised "
    "and caught within one call, never seen by the CLI or the web",
}


def _modules() -> list[str]:
    names = ["newsletter"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="newsletter."):
        if ".migrations" not in info.name and info.name != "newsletter.__main__":
            names.append(info.name)
    return names


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == name):
                found[f"{name}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_is_defined_in_errors() -> None:
    outside = {name for name, cls in _exception_classes().items()
               if cls.__module__ != "newsletter.errors"}
    assert outside == set(PRIVATE)


def test_every_error_is_in_the_family_and_in_the_diagram() -> None:
    mine = {name: cls for name, cls in vars(errors).items()
            if inspect.isclass(cls) and issubclass(cls, BaseException)}
    assert len(mine) >= 25
    assert all(issubclass(cls, NewsletterError) for cls in mine.values())
    diagram = set(re.findall(r"[─ ]([A-Z][A-Za-z]+)", errors.__doc__ or ""))
    assert set(mine) <= diagram | {"NewsletterError"}
    assert "NewsletterError" in (errors.__doc__ or "")


def test_the_old_import_paths_still_work() -> None:
    from newsletter.audience.emails import InvalidEmail
    from newsletter.audience.lists import ListNotFound
    from newsletter.audience.subscribers import SubscriberNotFound
    from newsletter.audience.tokens import InvalidToken
    from newsletter.db.schema import SchemaError
    from newsletter.delivery.backends.base import BackendUnavailable
    from newsletter.delivery.ledger import SendExists, SendNotFound
    from newsletter.feedback.sendgrid import WebhookMalformed, WebhookRejected

    for cls in (BackendUnavailable, SendExists, SendNotFound, InvalidEmail, ListNotFound,
                SchemaError, SubscriberNotFound, InvalidToken, WebhookMalformed,
                WebhookRejected):
        assert getattr(errors, cls.__name__) is cls
    assert issubclass(InvalidEmail, ValueError)  # a value that does not parse


def _broad(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return caught is None or any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException")
                                 for n in names)


def _reraises(handler: ast.ExceptHandler) -> bool:
    last = handler.body[-1]
    return isinstance(last, ast.Raise) and last.exc is None


def test_no_broad_except_without_a_reason() -> None:
    """``except Exception`` swallows everything: each one that does not raise again (a
    clean-up) says why on its line."""
    silent = []
    roots = [PACKAGE, PACKAGE.parent / "tests", PACKAGE.parent / "benchmarks"]
    for path in sorted(p for root in roots for p in root.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.ExceptHandler) and _broad(node) and not _reraises(node)
                    and "#" not in lines[node.lineno - 1].split("except", 1)[1]):
                silent.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert silent == []


def test_the_cli_reports_any_family_member_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An error from anywhere in the tree (here: a broken template while rendering,
    once outside the family) is one line and its exit code, never a traceback."""
    import newsletter.authoring.project

    def broken(*args: object, **kwargs: object) -> None:
        raise errors.RenderError("story.mjml.j2:3: template syntax error: unexpected '}'")

    monkeypatch.setattr(newsletter.authoring.project, "init_project", broken)
    with pytest.raises(SystemExit) as exited:
        main(["init", "somewhere"])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err == "newsletter: story.mjml.j2:3: template syntax error: unexpected '}'\n"
