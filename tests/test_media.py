"""Local images: validated at their line, resized into out/media/, served with long caching."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from newsletter.authoring.build import build_file
from newsletter.config import load_settings
from newsletter.web import create_app

from .conftest import write_issue
from .test_cli_authoring import run

GPS_IFD = 0x8825


def _photo(path: Path, size: tuple[int, int], *, orientation: int | None = None) -> Path:
    image = Image.new("RGB", size, (30, 90, 160))
    exif = image.getexif()
    exif[0x010F] = "Canon"  # make
    exif[0x0131] = "Editor's laptop"  # software
    if orientation:
        exif[0x0112] = orientation
    exif.get_ifd(GPS_IFD)[2] = (51.0, 30.0, 0.0)  # latitude: where the photographer stood
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", exif=exif.tobytes(), quality=92)
    return path


def _issue(project: Path, src: str, name: str = "t.md") -> Path:
    body = f"\n# Lead: A photo of our own\n![The harbour at dawn]({src} \"Photo: Desk\")\n\nText.\n"
    return write_issue(project / "issues", body, name=name)


def test_a_local_image_is_accepted_and_a_missing_one_named_at_its_line(project) -> None:
    settings = load_settings(project)
    _photo(project / "images" / "harbour.jpg", (2400, 1600))
    assert build_file(_issue(project, "images/harbour.jpg"), settings).findings == []
    [missing] = build_file(_issue(project, "images/harbor.jpg"), settings).errors
    assert (missing.line, missing.column, missing.rule) == (8, 24, "image-file")
    assert "'images/harbor.jpg' does not exist" in missing.message
    [outside] = build_file(_issue(project, "../secret.jpg"), settings).errors
    assert outside.rule == "image-file" and "outside the project" in outside.message
    (project / "images" / "notes.jpg").write_text("not a picture")
    [fake] = build_file(_issue(project, "images/notes.jpg"), settings).errors
    assert "not an image" in fake.message
    [other] = build_file(_issue(project, "javascript:alert(1)"), settings).errors
    assert other.rule == "image-url"  # a URL that is not https: is still refused


def test_render_resizes_strips_metadata_and_links_base_url_media(project, capsys,
                                                                  monkeypatch) -> None:
    monkeypatch.chdir(project)
    _photo(project / "images" / "harbour.jpg", (3000, 2000), orientation=6)  # shot upright
    issue = _issue(project, "images/harbour.jpg")
    code, _, err = run(capsys, "render", str(issue), "-o", "out/t.html")
    assert code == 0, err
    [published] = list((project / "out" / "media").iterdir())
    assert re.fullmatch(r"harbour-[0-9a-f]{12}\.jpg", published.name)
    with Image.open(published) as image:
        assert image.size == (1200, 1800)  # turned upright, then 1,200 px wide
        assert not image.getexif() and "exif" not in image.info
    assert b"Canon" not in published.read_bytes() and b"laptop" not in published.read_bytes()
    html = (project / "out" / "t.html").read_text()
    base = load_settings(project).base_url
    [img] = re.findall(rf'<img[^>]*src="{re.escape(base)}/media/{published.name}"[^>]*>', html)
    # the 544 px photo slot (600 px less 28 px either side), its height to scale
    assert 'width="544"' in img and 'height="816"' in img and "height: auto" in img


def test_a_small_image_is_never_scaled_up_and_a_changed_one_gets_a_new_name(project) -> None:
    from newsletter.authoring.media import plan, publish

    settings = load_settings(project)
    photo = _photo(project / "images" / "small.jpg", (640, 480))
    issue = build_file(_issue(project, "images/small.jpg"), settings).issue
    [first] = publish(settings, issue)
    with Image.open(first) as image:
        assert image.size == (640, 480)
    _photo(photo, (700, 480))
    [second] = publish(settings, issue)
    assert second != first and plan(settings, "images/small.jpg").width == 700


def test_serve_and_preview_serve_media_with_long_cache_headers(project) -> None:
    settings = load_settings(project)
    _photo(project / "images" / "harbour.jpg", (2400, 1600))
    issue_path = _issue(project, "images/harbour.jpg", name="2026-12-02.md")
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as preview:
        frame = preview.get("/issues/2026-12-02/frame").text
        [src] = re.findall(r'<img[^>]*src="(/media/harbour-[^"]+)"', frame)
        shown = preview.get(src)  # not written yet: the preview writes it on request
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    public = create_app(settings, preview=False, public=True)
    with TestClient(public, base_url="http://127.0.0.1") as site:
        answer = site.get(src)
        assert answer.status_code == 200 and answer.content == shown.content
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert answer.headers["x-content-type-options"] == "nosniff"
        for bad in ("/media/..%2Fnewsletter.toml", "/media/harbour.jpg", "/media/nope-0123456789ab.jpg"):
            assert site.get(bad).status_code == 404
    assert issue_path.exists()


@pytest.mark.parametrize("src", ["images/photo.jpg", "photo%20one.jpg"])
def test_relative_paths_are_local(src: str) -> None:
    from newsletter.authoring.media import is_local

    assert is_local(src)
    assert not any(is_local(u) for u in ("https://a.org/x.jpg", "/abs.jpg", "//h/x.jpg",
                                         "data:image/png;base64,xx", "javascript:alert(1)"))
