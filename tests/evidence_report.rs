//! The evidence record's HTML report in a real browser: headless Chromium (Debian's
//! `chromium` package, which `hack/test.sh` installs when missing) takes a screenshot of it,
//! dumps its DOM and prints it to PDF. The screenshot is decoded and the decisions chart's bars
//! are found by their colours and measured, so a chart that renders wrongly, or not at all,
//! fails.
//!
//! The browser is `TAILKEEPER_CHROMIUM` when set, else `chromium` on `PATH`. Without one the
//! test fails and says how to install it.

use std::io::{BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tailkeeper::api::{ReviewDecision, UndecidedAction};
use tailkeeper::entitlements::{AddedBy, Kind, Via};
use tailkeeper::reviews::evidence::{
    self, CHECK_FAIL_COLOUR, CHECK_PASS_COLOUR, CHECK_UNKNOWN_COLOUR, DEFAULT_KEPT_COLOUR,
    DEFAULT_REVOKED_COLOUR, KEPT_COLOUR, REVOKED_COLOUR,
};
use tailkeeper::reviews::{
    Applied, CheckRecord, Decided, Evidence, GrantRecord, Item, Outcome, RemovedText,
};

/// How long one browser run may take before its process group is killed.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The browser window (and so the screenshot), in CSS pixels at scale 1.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 2000;
/// How far a pixel's channels may be from a bar's colour and still count as the bar.
const TOLERANCE: i32 = 3;

const HOSTILE_COMMENT: &str = "<script>document.title='pwned'</script> \"quoted\" & 'single'";

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn item(n: usize, decision: Option<Decided>, applied: Option<Applied>) -> Item {
    // Even items are a group membership, odd ones a role.
    let group = n.is_multiple_of(2);
    Item {
        id: format!("i{n:012x}"),
        user: format!("user{n}@example.com"),
        person: (!n.is_multiple_of(3)).then(|| format!("Person {n}")),
        entitlement: if group { "group:prod" } else { "role:admin" }.into(),
        kind: if group { Kind::Group } else { Kind::Role },
        description: if group {
            "group:prod → tag:db (tcp:5432)"
        } else {
            "Tailscale role admin"
        }
        .into(),
        via: if group {
            Via::Group("group:eng".into())
        } else {
            Via::Direct
        },
        added_by: if group {
            AddedBy::Person
        } else {
            AddedBy::Tailscale
        },
        reviewers: vec!["user:alice".into(), "group:security".into()],
        manager: None,
        decision,
        applied,
    }
}

fn by(reviewer: &str, decision: ReviewDecision, comment: &str) -> Option<Decided> {
    Some(Decided {
        decision,
        by: reviewer.into(),
        at: t("2026-03-12T14:05:00Z"),
        comment: Some(comment.into()),
        record: Some(format!("{reviewer}-1")),
    })
}

fn applied(outcome: Outcome, message: &str, removed: &[(&str, &str)]) -> Option<Applied> {
    Some(Applied {
        outcome,
        at: t("2026-03-12T14:06:00Z"),
        removed: removed
            .iter()
            .map(|(location, text)| RemovedText {
                location: (*location).into(),
                text: (*text).into(),
            })
            .collect(),
        message: message.into(),
    })
}

/// 12 items: 5 kept by a reviewer, 4 revoked by a reviewer (3 removed, 1 that Tailkeeper
/// cannot remove), 2 kept and 1 revoked at the due time (already gone); 4 checks (2 pass,
/// 1 fails, 1 unknown) and 2 grants.
fn sample() -> Evidence {
    let due = t("2026-03-24T00:00:00Z");
    let mut items = Vec::new();
    for n in 0..5 {
        let comment = if n == 0 {
            HOSTILE_COMMENT
        } else {
            "still needed"
        };
        items.push(item(n, by("alice", ReviewDecision::Keep, comment), None));
    }
    for n in 5..8 {
        items.push(item(
            n,
            by("bob", ReviewDecision::Revoke, "left the team"),
            applied(
                Outcome::Removed,
                "removed from the policy file",
                &[(
                    "groups[\"group:prod\"][1]",
                    &format!("\"user{n}@example.com\""),
                )],
            ),
        ));
    }
    items.push(item(
        8,
        by("bob", ReviewDecision::Revoke, "not needed"),
        applied(
            Outcome::NotApplicable,
            "held through autogroup:member: a person must remove it",
            &[],
        ),
    ));
    items.push(item(
        9,
        Some(Decided::by_default(UndecidedAction::Keep, due)),
        None,
    ));
    items.push(item(
        10,
        Some(Decided::by_default(UndecidedAction::Keep, due)),
        None,
    ));
    items.push(item(
        11,
        Some(Decided::by_default(UndecidedAction::Revoke, due)),
        applied(Outcome::AlreadyGone, "nothing left to remove", &[]),
    ));
    // A user name a browser must show as text, never run.
    items[1].user = "\"o'neil\"<img>@example.com".into();

    let check = |name: &str, result: &str, failing: i64, message: &str| CheckRecord {
        name: name.into(),
        result: result.into(),
        message: message.into(),
        failing,
    };
    Evidence {
        review: "q1-prod".into(),
        namespace: "security".into(),
        uid: "5f0c2a3e-0000-4000-8000-000000000001".into(),
        policy: "corp".into(),
        description: Some("Quarterly review of production access".into()),
        scope: "groups group:prod; roles admin".into(),
        reviewers: "users alice, bob".into(),
        undecided: "Keep".into(),
        snapshot_at: t("2026-03-09T23:59:00Z"),
        started_at: t("2026-03-10T00:00:00Z"),
        due_at: due,
        ended_at: t("2026-03-24T00:00:05Z"),
        phase: "Overdue".into(),
        items,
        checks: vec![
            check(
                "UserIdentified",
                "Pass",
                0,
                "every user is a directory person",
            ),
            check("AccessControlConfigured", "Pass", 0, "a policy file is set"),
            check(
                "UserAccessValid",
                "Fail",
                1,
                "user3@example.com holds role admin",
            ),
            check(
                "OffboardedAccessRemoved",
                "Unknown",
                0,
                "the directory was not read",
            ),
        ],
        grants: vec![
            GrantRecord {
                name: "frank-admin".into(),
                user: "frank@example.com".into(),
                access: "role:admin".into(),
                phase: "Expired".into(),
                requested_by: Some("frank".into()),
                approved_by: Some("erin".into()),
                started_at: Some(t("2026-03-12T10:00:00Z")),
                ended_at: Some(t("2026-03-12T12:00:00Z")),
            },
            GrantRecord {
                name: "gina-prod".into(),
                user: "gina@example.com".into(),
                access: "group:prod".into(),
                phase: "Active".into(),
                requested_by: Some("gina".into()),
                approved_by: None,
                started_at: Some(t("2026-03-20T08:00:00Z")),
                ended_at: None,
            },
        ],
    }
}

/// The browser: `TAILKEEPER_CHROMIUM`, else `chromium` on `PATH`.
fn chromium() -> PathBuf {
    const HOW: &str = "this test renders the evidence report in headless Chromium: install \
                       Debian's package (as root: `apt-get install -y --no-install-recommends \
                       chromium`, after `apt-get update` if it is not found; hack/test.sh does \
                       this) or set TAILKEEPER_CHROMIUM to a Chromium or Chrome binary";
    if let Some(path) = std::env::var_os("TAILKEEPER_CHROMIUM") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TAILKEEPER_CHROMIUM={} is not a file; {HOW}",
            path.display()
        );
        return path;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("no `chromium` on PATH; {HOW}"))
}

/// A directory for the test's files, removed when the test passes (kept to look at when it
/// fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("tailkeeper-evidence-report-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the test's files are in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Reads a child's pipe to the end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits for the browser; past [`TIMEOUT`] its whole process group gets SIGKILL.
fn wait_with_timeout(child: &mut Child) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            return Ok(status);
        }
        if start.elapsed() > TIMEOUT {
            // SAFETY: plain kill(2) of our own child's process group.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            return Err(format!("chromium did not finish within {TIMEOUT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs headless Chromium on `page` with `args` (its own profile under `scratch`); returns
/// its stdout. Fails the test when it fails or hangs.
fn run_chromium(
    browser: &Path,
    scratch: &Path,
    name: &str,
    page: &Path,
    args: &[String],
) -> Vec<u8> {
    let profile = scratch.join(format!("profile-{name}"));
    std::fs::create_dir_all(&profile).expect("profile directory");
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        "--force-color-profile=srgb",
    ])
    .arg(format!("--window-size={WIDTH},{HEIGHT}"))
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .arg(format!("file://{}", page.display()))
    // Chromium writes under HOME and XDG directories too: keep it all in the scratch dir.
    .env("HOME", &profile)
    .env("XDG_CONFIG_HOME", profile.join("config"))
    .env("XDG_CACHE_HOME", profile.join("cache"))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    // SAFETY: only an async-signal-safe prctl between fork and exec: if the test process dies,
    // the browser gets SIGKILL.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", browser.display()));
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let status = wait_with_timeout(&mut child);
    let stdout = stdout.join().expect("stdout reader");
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    eprintln!("chromium {name}: {:.1}s", started.elapsed().as_secs_f64());
    let status = status.unwrap_or_else(|e| panic!("{e} ({name})\n--- stderr ---\n{stderr}"));
    assert!(
        status.success(),
        "chromium {name} exited with {status}\n--- stderr ---\n{stderr}"
    );
    stdout
}

/// The text of the element with `id` (up to the next tag) in serialized HTML.
fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\">");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no element with id {id} in the DOM"))
        + marker.len();
    let end = html[start..].find('<').expect("the element's end");
    html[start..start + end].trim()
}

fn rgb(hex: &str) -> [i32; 3] {
    let channel = |i: usize| i32::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).expect("hex");
    [channel(0), channel(1), channel(2)]
}

/// The pixels of one colour in a picture: how many, and the box around them.
#[derive(Debug)]
struct Area {
    pixels: usize,
    left: u32,
    top: u32,
    right: u32,
    bottom: u32,
}

impl Area {
    fn box_pixels(&self) -> usize {
        ((self.right - self.left + 1) * (self.bottom - self.top + 1)) as usize
    }
}

/// A decoded screenshot, 8-bit RGB(A).
struct Picture {
    width: u32,
    height: u32,
    channels: usize,
    data: Vec<u8>,
}

impl Picture {
    fn decode(path: &Path) -> Self {
        let file = std::fs::File::open(path).expect("open the screenshot");
        let mut decoder = png::Decoder::new(BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut data = vec![0; reader.output_buffer_size().expect("a sane size")];
        let info = reader.next_frame(&mut data).expect("the PNG's pixels");
        data.truncate(info.buffer_size());
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("screenshot in {other:?}, expected RGB or RGBA"),
        };
        Picture {
            width: info.width,
            height: info.height,
            channels,
            data,
        }
    }

    /// For each colour, the pixels within [`TOLERANCE`] of it on every channel (`None` when
    /// there are none). The colours are far enough apart that a pixel matches one at most.
    fn areas(&self, colours: &[&str]) -> Vec<Option<Area>> {
        let wanted: Vec<[i32; 3]> = colours.iter().map(|hex| rgb(hex)).collect();
        let mut areas: Vec<Option<Area>> = colours.iter().map(|_| None).collect();
        for (i, px) in self.data.chunks_exact(self.channels).enumerate() {
            let Some(k) = wanted
                .iter()
                .position(|want| (0..3).all(|c| (i32::from(px[c]) - want[c]).abs() <= TOLERANCE))
            else {
                continue;
            };
            let (x, y) = (
                (i % self.width as usize) as u32,
                (i / self.width as usize) as u32,
            );
            match &mut areas[k] {
                None => {
                    areas[k] = Some(Area {
                        pixels: 1,
                        left: x,
                        top: y,
                        right: x,
                        bottom: y,
                    })
                }
                Some(a) => {
                    a.pixels += 1;
                    a.left = a.left.min(x);
                    a.top = a.top.min(y);
                    a.right = a.right.max(x);
                    a.bottom = a.bottom.max(y);
                }
            }
        }
        areas
    }
}

/// Checks that the bars of one chart are solid rectangles on one baseline, in the top of the
/// page, with areas in proportion to their counts (within 15%).
fn assert_bars(picture: &Picture, chart: &str, bars: &[(&str, &str, usize)]) -> Vec<Area> {
    let colours: Vec<&str> = bars.iter().map(|(_, colour, _)| *colour).collect();
    let areas: Vec<Area> = bars
        .iter()
        .zip(picture.areas(&colours))
        .map(|((name, colour, _), area)| {
            area.unwrap_or_else(|| {
                panic!("{chart}: no pixel of the {name} bar's colour {colour} in the screenshot")
            })
        })
        .collect();
    for ((name, colour, _), area) in bars.iter().zip(&areas) {
        assert!(
            area.pixels * 100 >= area.box_pixels() * 98,
            "{chart}: the {name} bar ({colour}) is not a solid rectangle: {area:?}"
        );
        assert!(
            area.bottom < 1000,
            "{chart}: the {name} bar is not near the top of the page: {area:?}"
        );
        assert_eq!(
            area.bottom, areas[0].bottom,
            "{chart}: the {name} bar is not on the baseline: {area:?} vs {:?}",
            areas[0]
        );
        assert_eq!(
            area.right - area.left,
            areas[0].right - areas[0].left,
            "{chart}: the {name} bar is not as wide as the others: {area:?}"
        );
    }
    let (first, first_colour, first_count) = bars[0];
    for ((name, _, count), area) in bars.iter().zip(&areas).skip(1) {
        let expected = first_count as f64 / *count as f64;
        let actual = areas[0].pixels as f64 / area.pixels as f64;
        assert!(
            (actual / expected - 1.0).abs() <= 0.15,
            "{chart}: the {first} bar ({first_colour}) is {actual:.3} times the {name} bar, \
             expected {expected:.3} ({first_count}/{count}): {:?} vs {area:?}",
            areas[0]
        );
    }
    areas
}

#[test]
fn the_html_report_renders_its_figures_and_chart_in_chromium() {
    let browser = chromium();
    let scratch = Scratch::new();
    let page = scratch.0.join("evidence.html");
    std::fs::write(&page, evidence::to_html(&sample())).expect("write the report");
    let started = Instant::now();

    // The DOM: the key figures at their ids, the hostile comment and user name as text.
    let dom = run_chromium(
        &browser,
        &scratch.0,
        "dump-dom",
        &page,
        &["--dump-dom".into()],
    );
    let dom = String::from_utf8_lossy(&dom);
    for (id, n) in [
        ("items", "12"),
        ("kept", "7"),
        ("revoked", "5"),
        ("undecided", "3"),
        ("removed", "3"),
    ] {
        assert_eq!(text_of(&dom, id), n, "figure {id} in the DOM");
    }
    assert!(
        dom.contains("<title>Access review security/q1-prod</title>"),
        "the title\n{dom}"
    );
    assert!(
        !dom.contains("<script"),
        "a script element in the DOM\n{dom}"
    );
    assert!(!dom.contains("<img"), "an img element in the DOM\n{dom}");
    assert!(
        dom.contains(
            "&lt;script&gt;document.title='pwned'&lt;/script&gt; \"quoted\" &amp; 'single'"
        ),
        "the hostile comment as text\n{dom}"
    );
    assert!(
        dom.contains("\"o'neil\"&lt;img&gt;@example.com"),
        "the hostile user name as text\n{dom}"
    );

    // The screenshot: the bars of both charts, measured.
    let png_path = scratch.0.join("evidence.png");
    run_chromium(
        &browser,
        &scratch.0,
        "screenshot",
        &page,
        &[format!("--screenshot={}", png_path.display())],
    );
    let picture = Picture::decode(&png_path);
    assert_eq!((picture.width, picture.height), (WIDTH, HEIGHT));
    let decisions = assert_bars(
        &picture,
        "decisions",
        &[
            ("kept by a reviewer", KEPT_COLOUR, 5),
            ("revoked by a reviewer", REVOKED_COLOUR, 4),
            ("kept at the due time", DEFAULT_KEPT_COLOUR, 2),
            ("revoked at the due time", DEFAULT_REVOKED_COLOUR, 1),
        ],
    );
    assert!(
        decisions.windows(2).all(|w| w[0].pixels > w[1].pixels)
            && decisions.windows(2).all(|w| w[0].left < w[1].left),
        "the decision bars are not ordered like their counts, left to right: {decisions:?}"
    );
    assert_bars(
        &picture,
        "checks",
        &[
            ("passing", CHECK_PASS_COLOUR, 2),
            ("failing", CHECK_FAIL_COLOUR, 1),
            ("unknown", CHECK_UNKNOWN_COLOUR, 1),
        ],
    );

    // The PDF.
    let pdf_path = scratch.0.join("evidence.pdf");
    run_chromium(
        &browser,
        &scratch.0,
        "print-to-pdf",
        &page,
        &[
            format!("--print-to-pdf={}", pdf_path.display()),
            "--no-pdf-header-footer".into(),
        ],
    );
    let pdf = std::fs::read(&pdf_path).expect("the PDF");
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    assert!(pdf.len() > 20_000, "a PDF of only {} bytes", pdf.len());

    eprintln!(
        "Chromium rendered the report three ways in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
