//! The people directory: who the people are, their login names, organisational role and
//! employment status.
//!
//! This file owns reading directory files (CSV, JSON, YAML) into [`Person`]s and folding every
//! source of an `AccessPolicy` (inline entries, ConfigMaps) into one [`Directory`]. It never fetches
//! anything: callers hand it text and labels.
//!
//! Login names compare case-insensitively with surrounding whitespace ignored, because Tailscale
//! and HR systems disagree about capitalisation. A login name may belong to only one person: an
//! ambiguous directory is an error, never a guess, since the checks (and enforcement) act on the
//! person a login resolves to.
//!
//! # File formats
//!
//! **CSV**: a header row is required. Header names are matched ignoring case, spaces, `_` and
//! `-`, so `loginName`, `Login Name` and `login_name` are the same column:
//! - `login`, `loginName`, `loginNames` or `email`: one or more login names, separated by `;`,
//!   `,` or whitespace within a cell; several such columns may be given and are combined;
//! - `displayName` or `name`; `orgRole` or `role`; `status`; `manager` (a login name of the
//!   person's manager);
//! - other columns are ignored (directory exports carry many); blank rows are skipped.
//!
//! **JSON** and **YAML**: a list of people, or an object with a `people` list. Each person has
//! `loginNames` (a list) and/or `loginName` (one string), and optionally `displayName`, `orgRole`,
//! `status` and `manager`. Other fields are ignored, as in CSV.
//!
//! **Status** in files is read leniently, ignoring case: `active`, or `offboarded`; `terminated`,
//! `inactive` and `left` also mean offboarded, because that is what HR exports say for people who
//! have left (when in doubt a person counts as gone: check 2 then asks for their account to be
//! removed, which is the safe side for a critical system). A blank or missing status means active.
//! Anything else is an error. Inline entries in the custom resource are strict: `Active` or
//! `Offboarded`, enforced by the CRD schema.

use std::collections::HashMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One person in the directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// The person's Tailscale login names, e.g. `alice@example.com` and `alice@github`. At least
    /// one. Matched case-insensitively; a login name may belong to only one person.
    #[schemars(length(min = 1))]
    pub login_names: Vec<String>,
    /// The person's name, for humans reading check results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The person's organisational role (e.g. `engineer`), which the role rules map to the
    /// Tailscale roles it may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_role: Option<String>,
    /// Whether the person still works here. Offboarded people must not have access.
    #[serde(default)]
    pub status: EmploymentStatus,
    /// The Kubernetes user names this person acts as: their own, and any ServiceAccount they
    /// control (`system:serviceaccount:<namespace>:<name>`). Nobody approves a grant for
    /// themselves under any of them. A name may belong to only one person.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_users: Vec<String>,
    /// The Kubernetes groups this person is in, as the directory knows them. When listed, an
    /// approval they give through an approver group (`approval.group`) counts only if the
    /// group is among them: leaving a group in the directory takes away approval authority
    /// even while the identity provider still reports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_groups: Vec<String>,
    /// A login name of the person's manager (another person in the directory), who reviews
    /// this person's access in access reviews with `reviewers.managers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
}

/// Employment status of a person. Offboarded people must have no unsuspended Tailscale account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EmploymentStatus {
    /// The person works here.
    #[default]
    Active,
    /// The person has left; their Tailscale accounts must be suspended or deleted.
    Offboarded,
}

impl EmploymentStatus {
    /// Reads a status as directory files write it (see the module docs).
    fn from_file_text(text: &str) -> Result<Self, String> {
        match text.trim().to_lowercase().as_str() {
            "" | "active" => Ok(Self::Active),
            "offboarded" | "terminated" | "inactive" | "left" => Ok(Self::Offboarded),
            _ => Err(format!(
                "status \"{}\" is not one of active, offboarded \
                 (terminated, inactive and left also mean offboarded)",
                text.trim()
            )),
        }
    }
}

/// The format of a directory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirectoryFormat {
    Csv,
    Json,
    Yaml,
}

impl DirectoryFormat {
    /// The format of a file (or ConfigMap key) by its extension: `.csv`, `.json`, `.yaml` or
    /// `.yml`, in any case.
    pub fn from_key(key: &str) -> Option<Self> {
        let (_, extension) = key.rsplit_once('.')?;
        match extension.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }
}

impl fmt::Display for DirectoryFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "CSV",
            Self::Json => "JSON",
            Self::Yaml => "YAML",
        })
    }
}

/// Where in a source a problem is: a CSV line, or the n-th person (from 1) of a list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Line(u64),
    Entry(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(line) => write!(f, "line {line}"),
            Self::Entry(entry) => write!(f, "entry {entry}"),
        }
    }
}

/// A directory that cannot be used as it stands. Messages say where and what to fix; `origin`
/// names the source (e.g. `ConfigMap people/people.csv`) once a caller has attached it with
/// [`DirectoryError::with_origin`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The source as a whole is unreadable (syntax, missing login column, ...).
    #[error("{}{problem}", prefix(.origin, ": "))]
    File {
        origin: Option<String>,
        problem: String,
    },
    /// One row or entry is wrong.
    #[error("{}{place}: {problem}", prefix(.origin, " "))]
    Entry {
        origin: Option<String>,
        place: Place,
        problem: String,
    },
    /// Two people claim the same login name, so it cannot be resolved to one person.
    #[error(
        "login name \"{login}\" is claimed by two people: {first} and {second}; \
         a login name must identify exactly one person, so remove it from one of them"
    )]
    DuplicateLogin {
        login: String,
        /// The person who claimed it first, e.g. `inline entry 2 (Alice Smith)`.
        first: String,
        /// The person who claimed it again.
        second: String,
    },
}

fn prefix(origin: &Option<String>, separator: &str) -> String {
    origin
        .as_deref()
        .map(|origin| format!("{origin}{separator}"))
        .unwrap_or_default()
}

impl DirectoryError {
    /// Names the source the error came from, unless it already names one.
    pub fn with_origin(self, origin: impl Into<String>) -> Self {
        match self {
            Self::File {
                origin: None,
                problem,
            } => Self::File {
                origin: Some(origin.into()),
                problem,
            },
            Self::Entry {
                origin: None,
                place,
                problem,
            } => Self::Entry {
                origin: Some(origin.into()),
                place,
                problem,
            },
            other => other,
        }
    }

    fn file(problem: impl Into<String>) -> Self {
        Self::File {
            origin: None,
            problem: problem.into(),
        }
    }

    fn entry(place: Place, problem: impl Into<String>) -> Self {
        Self::Entry {
            origin: None,
            place,
            problem: problem.into(),
        }
    }
}

/// Every person of an `AccessPolicy`, indexed by login name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Directory {
    people: Vec<Person>,
    /// Normalised login name -> index into `people`.
    by_login: HashMap<String, usize>,
    /// Kubernetes user name -> index into `people`.
    by_kubernetes_user: HashMap<String, usize>,
}

impl Directory {
    /// Folds labelled sources (e.g. `("inline", ...)`, `("ConfigMap people/people.csv", ...)`)
    /// into one directory.
    ///
    /// Login names are trimmed and de-duplicated within a person. Fails when a person has no
    /// login name, or when a login name belongs to two entries (even identical ones: the same
    /// person listed twice is a mistake worth fixing at its source).
    pub fn build<S: Into<String>>(
        sources: impl IntoIterator<Item = (S, Vec<Person>)>,
    ) -> Result<Self, DirectoryError> {
        let mut directory = Self::default();
        // Who claimed each login, for the duplicate message.
        let mut claimants: Vec<String> = Vec::new();
        for (origin, people) in sources {
            let origin = origin.into();
            for (index, person) in people.into_iter().enumerate() {
                let place = Place::Entry(index + 1);
                let person = normalise(person)
                    .map_err(|problem| DirectoryError::entry(place, problem))
                    .map_err(|error| error.with_origin(origin.as_str()))?;
                let position = directory.people.len();
                claimants.push(describe(&origin, place, &person));
                for login in &person.login_names {
                    if let Some(&earlier) = directory.by_login.get(&login_key(login)) {
                        return Err(DirectoryError::DuplicateLogin {
                            login: login.clone(),
                            first: claimants[earlier].clone(),
                            second: claimants[position].clone(),
                        });
                    }
                    directory.by_login.insert(login_key(login), position);
                }
                for user in &person.kubernetes_users {
                    if let Some(&earlier) = directory.by_kubernetes_user.get(user) {
                        return Err(DirectoryError::DuplicateLogin {
                            login: format!("Kubernetes user {user}"),
                            first: claimants[earlier].clone(),
                            second: claimants[position].clone(),
                        });
                    }
                    directory.by_kubernetes_user.insert(user.clone(), position);
                }
                directory.people.push(person);
            }
        }
        Ok(directory)
    }

    /// Whether the Kubernetes user `user` and the Tailscale login `login` are the same person.
    pub fn same_person(&self, user: &str, login: &str) -> bool {
        match (
            self.by_kubernetes_user.get(user.trim()),
            self.by_login.get(&login_key(login)),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// The person the Kubernetes user name `user` belongs to.
    pub fn person_of_user(&self, user: &str) -> Option<&Person> {
        self.by_kubernetes_user
            .get(user.trim())
            .map(|&index| &self.people[index])
    }

    /// The person a login name belongs to, ignoring case and surrounding whitespace.
    pub fn lookup(&self, login: &str) -> Option<&Person> {
        self.by_login
            .get(&login_key(login))
            .map(|&index| &self.people[index])
    }

    /// Everyone, in source order.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// How many people (not login names) the directory holds.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }
}

/// The form in which login names are compared.
pub(crate) fn login_key(login: &str) -> String {
    login.trim().to_lowercase()
}

fn describe(origin: &str, place: Place, person: &Person) -> String {
    match &person.display_name {
        Some(name) => format!("{origin} {place} ({name})"),
        None => format!("{origin} {place}"),
    }
}

/// Trims a person's fields and de-duplicates their login names; fails without a login name.
fn normalise(person: Person) -> Result<Person, String> {
    let mut login_names: Vec<String> = Vec::new();
    for login in person.login_names {
        let login = login.trim();
        if !login.is_empty()
            && !login_names
                .iter()
                .any(|known| login_key(known) == login_key(login))
        {
            login_names.push(login.to_owned());
        }
    }
    if login_names.is_empty() {
        return Err("no login name; give each person at least one".to_owned());
    }
    Ok(Person {
        login_names,
        display_name: non_blank(person.display_name),
        org_role: non_blank(person.org_role),
        status: person.status,
        kubernetes_users: distinct_names(person.kubernetes_users),
        kubernetes_groups: distinct_names(person.kubernetes_groups),
        manager: non_blank(person.manager),
    })
}

/// Trimmed, non-empty, each once, in order.
fn distinct_names(names: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim();
        if !name.is_empty() && !out.iter().any(|known| known == name) {
            out.push(name.to_owned());
        }
    }
    out
}

fn non_blank(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// Reads the people in one directory file. Errors name the line (CSV) or entry (JSON, YAML);
/// attach the file's name with [`DirectoryError::with_origin`].
pub fn parse_people(format: DirectoryFormat, text: &str) -> Result<Vec<Person>, DirectoryError> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(DirectoryError::file(format!(
            "{} bytes; a directory source may have at most {MAX_SOURCE_BYTES}: split it",
            text.len()
        )));
    }
    // Spreadsheets like to start their exports with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let people = match format {
        DirectoryFormat::Csv => parse_csv(text),
        DirectoryFormat::Json => {
            let document = serde_json::from_str(text)
                .map_err(|error| DirectoryError::file(format!("not valid JSON: {error}")))?;
            parse_document(document)
        }
        DirectoryFormat::Yaml => {
            let document = serde_saphyr::from_str_with_options(text, yaml_options())
                .map_err(|error| DirectoryError::file(format!("not valid YAML: {error}")))?;
            parse_document(document)
        }
    }?;
    if people.len() > MAX_PEOPLE {
        return Err(DirectoryError::file(format!(
            "{} people in one file; at most {MAX_PEOPLE} are read: split the directory or trim the export",
            people.len()
        )));
    }
    Ok(people)
}

/// People with the Kubernetes identities their logins map to under the cluster's rule: for
/// every e-mail-like login, the user name `prefix` + login (as the API server's OIDC or
/// structured authentication names users by their e-mail claim, e.g. `oidc:alice@example.com`),
/// besides the identities listed for them. A derived name another person lists is refused when
/// the directory is built, like any identity two people claim.
pub fn with_login_identities(people: Vec<Person>, prefix: &str) -> Vec<Person> {
    people
        .into_iter()
        .map(|mut person| {
            for login in &person.login_names {
                let login = login.trim();
                if !login.contains('@') {
                    continue;
                }
                let user = format!("{prefix}{}", login.to_lowercase());
                if !person.kubernetes_users.contains(&user) {
                    person.kubernetes_users.push(user);
                }
            }
            person
        })
        .collect()
}

/// Why a directory source cannot be trusted to say who may hold which role: it lists active
/// people but none of them has an organisational role (an HR export that lost its orgRole
/// column). `None` when it can.
pub fn missing_org_roles(people: &[Person]) -> Option<String> {
    let active: Vec<&Person> = people
        .iter()
        .filter(|p| p.status == EmploymentStatus::Active)
        .collect();
    if active.is_empty() || active.iter().any(|p| p.org_role.is_some()) {
        return None;
    }
    Some(format!(
        "none of its {} active people has an organisational role; is the orgRole column missing? Until it is back the checks stay Unknown and nothing is enforced",
        active.len()
    ))
}

/// The most bytes one directory source may have (a ConfigMap holds at most 1 MiB anyway).
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;
/// The most people one directory source may list.
pub const MAX_PEOPLE: usize = 50_000;

/// YAML from an HR export is untrusted: bounded nesting, events and nodes, and no anchors or
/// aliases (no "billion laughs"), so a hostile file costs little to refuse.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = 16;
    budget.max_events = 2_000_000;
    budget.max_nodes = 1_000_000;
    // Directories need no anchors or aliases; refusing them rules out alias bombs outright.
    budget.max_aliases = 0;
    budget.max_anchors = 0;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Which CSV columns hold what.
#[derive(Default)]
struct Columns {
    logins: Vec<usize>,
    display_name: Option<(usize, String)>,
    org_role: Option<(usize, String)>,
    status: Option<(usize, String)>,
    kubernetes_users: Option<(usize, String)>,
    kubernetes_groups: Option<(usize, String)>,
    manager: Option<(usize, String)>,
}

impl Columns {
    fn from_headers(headers: &csv::StringRecord) -> Result<Self, DirectoryError> {
        let mut columns = Self::default();
        for (index, header) in headers.iter().enumerate() {
            let canonical: String = header
                .chars()
                .filter(|c| !matches!(c, ' ' | '_' | '-'))
                .collect::<String>()
                .to_lowercase();
            let (slot, meaning) = match canonical.as_str() {
                "login" | "loginname" | "loginnames" | "email" => {
                    columns.logins.push(index);
                    continue;
                }
                "displayname" | "name" => (&mut columns.display_name, "the display name"),
                "orgrole" | "role" => (&mut columns.org_role, "the organisational role"),
                "status" => (&mut columns.status, "the status"),
                "kubernetesusers" | "kubernetesuser" | "k8susers" => {
                    (&mut columns.kubernetes_users, "the Kubernetes user names")
                }
                "kubernetesgroups" | "kubernetesgroup" | "k8sgroups" => {
                    (&mut columns.kubernetes_groups, "the Kubernetes groups")
                }
                "manager" | "manageremail" | "managerlogin" | "managerloginname" => {
                    (&mut columns.manager, "the manager")
                }
                _ => continue,
            };
            if let Some((_, earlier)) = slot {
                return Err(DirectoryError::file(format!(
                    "columns \"{earlier}\" and \"{header}\" both give {meaning}; keep one"
                )));
            }
            *slot = Some((index, header.to_owned()));
        }
        if columns.logins.is_empty() {
            let found: Vec<&str> = headers.iter().filter(|h| !h.is_empty()).collect();
            return Err(DirectoryError::file(format!(
                "no login name column: the header row must name a column login, loginName or \
                 email (found: {})",
                found.join(", ")
            )));
        }
        Ok(columns)
    }
}

fn parse_csv(text: &str) -> Result<Vec<Person>, DirectoryError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(csv_error)?.clone();
    if headers.iter().all(str::is_empty) {
        return Err(DirectoryError::file(
            "no header row: the first line must name the columns, at least login",
        ));
    }
    let columns = Columns::from_headers(&headers)?;
    let mut people = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let place = Place::Line(record.position().map_or(0, csv::Position::line));
        let cell = |column: &Option<(usize, String)>| {
            column
                .as_ref()
                .and_then(|(index, _)| record.get(*index))
                .map(str::to_owned)
        };
        let login_names = columns
            .logins
            .iter()
            .filter_map(|&index| record.get(index))
            .flat_map(|cell| cell.split(|c: char| c == ';' || c == ',' || c.is_whitespace()))
            .map(str::to_owned)
            .collect();
        let status = EmploymentStatus::from_file_text(&cell(&columns.status).unwrap_or_default())
            .map_err(|problem| DirectoryError::entry(place, problem))?;
        let person = Person {
            login_names,
            display_name: cell(&columns.display_name),
            org_role: cell(&columns.org_role),
            status,
            kubernetes_users: cell(&columns.kubernetes_users)
                .map(|c| c.split(';').map(str::to_owned).collect())
                .unwrap_or_default(),
            kubernetes_groups: cell(&columns.kubernetes_groups)
                .map(|c| c.split(';').map(str::to_owned).collect())
                .unwrap_or_default(),
            manager: cell(&columns.manager),
        };
        people.push(normalise(person).map_err(|problem| DirectoryError::entry(place, problem))?);
    }
    Ok(people)
}

fn csv_error(error: csv::Error) -> DirectoryError {
    match error.kind() {
        csv::ErrorKind::UnequalLengths {
            pos: Some(position),
            expected_len,
            len,
        } => DirectoryError::entry(
            Place::Line(position.line()),
            format!(
                "has {len} cells but the header row has {expected_len}; \
                 quote cells that contain commas"
            ),
        ),
        _ => DirectoryError::file(format!("not valid CSV: {error}")),
    }
}

/// A person as JSON and YAML files write one: more forgiving than the CRD's [`Person`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PersonRecord {
    #[serde(default)]
    login_name: Option<String>,
    #[serde(default)]
    login_names: Option<Vec<String>>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    org_role: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    kubernetes_users: Option<Vec<String>>,
    #[serde(default)]
    kubernetes_groups: Option<Vec<String>>,
    #[serde(default)]
    manager: Option<String>,
}

fn parse_document(document: serde_json::Value) -> Result<Vec<Person>, DirectoryError> {
    use serde_json::Value;
    let entries = match document {
        Value::Array(entries) => entries,
        Value::Object(mut object) if object.contains_key("people") => {
            match object.remove("people") {
                Some(Value::Array(entries)) => entries,
                _ => return Err(DirectoryError::file("\"people\" must be a list of people")),
            }
        }
        Value::Null => {
            return Err(DirectoryError::file(
                "the file is empty: expected a list of people",
            ))
        }
        _ => {
            return Err(DirectoryError::file(
                "expected a list of people, or an object with a \"people\" list",
            ))
        }
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let place = Place::Entry(index + 1);
            if !entry.is_object() {
                return Err(DirectoryError::entry(
                    place,
                    "expected a person with loginNames, displayName, orgRole and status",
                ));
            }
            let record: PersonRecord = serde_json::from_value(entry)
                .map_err(|error| DirectoryError::entry(place, error.to_string()))?;
            let status = EmploymentStatus::from_file_text(record.status.as_deref().unwrap_or(""))
                .map_err(|problem| DirectoryError::entry(place, problem))?;
            let person = Person {
                login_names: record
                    .login_name
                    .into_iter()
                    .chain(record.login_names.unwrap_or_default())
                    .collect(),
                display_name: record.display_name,
                org_role: record.org_role,
                status,
                kubernetes_users: record.kubernetes_users.unwrap_or_default(),
                kubernetes_groups: record.kubernetes_groups.unwrap_or_default(),
                manager: record.manager,
            };
            normalise(person).map_err(|problem| DirectoryError::entry(place, problem))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(logins: &[&str]) -> Person {
        Person {
            login_names: logins.iter().map(|login| login.to_string()).collect(),
            display_name: None,
            org_role: None,
            status: EmploymentStatus::Active,
            kubernetes_users: Vec::new(),
            kubernetes_groups: Vec::new(),
            manager: None,
        }
    }

    fn named(name: &str, logins: &[&str]) -> Person {
        Person {
            display_name: Some(name.to_owned()),
            ..person(logins)
        }
    }

    fn csv(text: &str) -> Result<Vec<Person>, DirectoryError> {
        parse_people(DirectoryFormat::Csv, text)
    }

    fn error_message(result: Result<Vec<Person>, DirectoryError>, origin: &str) -> String {
        result
            .expect_err("the input should be rejected")
            .with_origin(origin)
            .to_string()
    }

    fn logins(people: &[Person]) -> Vec<Vec<&str>> {
        people
            .iter()
            .map(|p| p.login_names.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn lookup_finds_a_person_by_any_login_ignoring_case_and_whitespace() {
        let directory = Directory::build([(
            "inline",
            vec![person(&["Alice@Example.com", "alice@github"])],
        )])
        .unwrap();
        for login in [
            "alice@example.com",
            "ALICE@EXAMPLE.COM",
            " alice@github ",
            "Alice@GitHub",
        ] {
            assert_eq!(
                directory.lookup(login).map(|p| p.login_names[0].as_str()),
                Some("Alice@Example.com"),
                "{login}"
            );
        }
        assert_eq!(directory.lookup("alice@other"), None);
        assert_eq!(directory.len(), 1);
    }

    #[test]
    fn people_from_several_sources_are_combined() {
        let directory = Directory::build([
            ("inline", vec![person(&["alice@example.com"])]),
            (
                "ConfigMap people/people.csv",
                vec![person(&["bob@example.com"])],
            ),
        ])
        .unwrap();
        assert_eq!(directory.len(), 2);
        assert!(directory.lookup("bob@example.com").is_some());
    }

    #[test]
    fn a_login_claimed_by_two_people_is_an_error_naming_both() {
        let error = Directory::build([
            ("inline", vec![named("Alice Smith", &["alice@example.com"])]),
            (
                "ConfigMap people/people.csv",
                vec![
                    person(&["bob@example.com"]),
                    named("Alice Jones", &["ajones@example.com", "ALICE@example.com"]),
                ],
            ),
        ])
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "login name \"ALICE@example.com\" is claimed by two people: inline entry 1 \
             (Alice Smith) and ConfigMap people/people.csv entry 2 (Alice Jones); a login name \
             must identify exactly one person, so remove it from one of them"
        );
    }

    #[test]
    fn the_same_person_listed_twice_is_an_error() {
        let error = Directory::build([(
            "inline",
            vec![
                person(&["alice@example.com"]),
                person(&["alice@example.com"]),
            ],
        )])
        .unwrap_err();
        assert!(
            matches!(error, DirectoryError::DuplicateLogin { .. }),
            "{error}"
        );
    }

    #[test]
    fn repeated_logins_of_one_person_are_merged_and_trimmed() {
        let directory = Directory::build([(
            "inline",
            vec![person(&[
                " alice@example.com ",
                "Alice@Example.com",
                "alice@github",
            ])],
        )])
        .unwrap();
        assert_eq!(
            directory.people()[0].login_names,
            ["alice@example.com", "alice@github"]
        );
    }

    #[test]
    fn a_person_without_a_login_name_is_an_error_naming_the_entry() {
        let error = Directory::build([(
            "inline",
            vec![person(&["alice@example.com"]), person(&["  "])],
        )])
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "inline entry 2: no login name; give each person at least one"
        );
    }

    #[test]
    fn csv_reads_several_logins_per_cell_and_repeated_login_columns() {
        let people = csv("login,email,name\n\
             alice@example.com;alice@github,,Alice\n\
             \"bob@example.com, bob@github\",bob@gitlab,Bob\n\
             carol@example.com carol@github,CAROL@EXAMPLE.COM,Carol\n")
        .unwrap();
        assert_eq!(
            logins(&people),
            [
                vec!["alice@example.com", "alice@github"],
                vec!["bob@example.com", "bob@github", "bob@gitlab"],
                vec!["carol@example.com", "carol@github"],
            ]
        );
    }

    #[test]
    fn csv_headers_match_ignoring_case_and_separators_and_unknown_columns_are_ignored() {
        let people = csv(
            "\u{feff}Employee ID, Login Name ,DISPLAY_NAME,Org-Role,Status,Department\n\
             17,alice@example.com,Alice Smith,engineer,Offboarded,R&D\n",
        )
        .unwrap();
        assert_eq!(
            people,
            [Person {
                login_names: vec!["alice@example.com".into()],
                display_name: Some("Alice Smith".into()),
                org_role: Some("engineer".into()),
                status: EmploymentStatus::Offboarded,
                kubernetes_users: Vec::new(),
                kubernetes_groups: Vec::new(),
                manager: None,
            }]
        );
    }

    #[test]
    fn csv_short_column_names_and_blank_cells() {
        let people = csv("email,name,role\nbob@example.com,,\n\n , , \n").unwrap();
        assert_eq!(people, [person(&["bob@example.com"])]);
    }

    #[test]
    fn status_is_read_leniently_from_files() {
        let cases = [
            ("", EmploymentStatus::Active),
            ("active", EmploymentStatus::Active),
            ("ACTIVE", EmploymentStatus::Active),
            ("Offboarded", EmploymentStatus::Offboarded),
            ("terminated", EmploymentStatus::Offboarded),
            ("Inactive", EmploymentStatus::Offboarded),
            ("left", EmploymentStatus::Offboarded),
        ];
        for (text, expected) in cases {
            let people = csv(&format!("login,status\nalice@example.com,{text}\n")).unwrap();
            assert_eq!(people[0].status, expected, "status {text:?}");
        }
    }

    #[test]
    fn csv_errors_name_the_file_line_and_fix() {
        let cases = [
            (
                "login,name\nalice@example.com,Alice\nbob@example.com,Bob\n,Nobody\n",
                "people.csv line 4: no login name; give each person at least one",
            ),
            (
                "login,status\nalice@example.com,active\nbob@example.com,gone\n",
                "people.csv line 3: status \"gone\" is not one of active, offboarded \
                 (terminated, inactive and left also mean offboarded)",
            ),
            (
                "login,name\nalice@example.com,Smith, Alice\n",
                "people.csv line 2: has 3 cells but the header row has 2; \
                 quote cells that contain commas",
            ),
            (
                "name,role\nAlice,engineer\n",
                "people.csv: no login name column: the header row must name a column login, \
                 loginName or email (found: name, role)",
            ),
            (
                "login,name,displayName\nalice@example.com,Alice,Alice\n",
                "people.csv: columns \"name\" and \"displayName\" both give the display name; \
                 keep one",
            ),
            (
                "",
                "people.csv: no header row: the first line must name the columns, at least login",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error_message(csv(text), "people.csv"), expected, "{text:?}");
        }
    }

    #[test]
    fn json_reads_a_list_or_a_people_object_with_either_login_field() {
        let list = r#"[
            {"loginNames": ["alice@example.com", "alice@github"], "displayName": "Alice",
             "orgRole": "engineer", "status": "offboarded", "team": "platform"},
            {"loginName": "bob@example.com"},
            {"loginName": "carol@example.com", "loginNames": ["carol@github"], "status": null}
        ]"#;
        let wrapped = format!(r#"{{"people": {list}}}"#);
        for text in [list, wrapped.as_str()] {
            let people = parse_people(DirectoryFormat::Json, text).unwrap();
            assert_eq!(
                logins(&people),
                [
                    vec!["alice@example.com", "alice@github"],
                    vec!["bob@example.com"],
                    vec!["carol@example.com", "carol@github"],
                ]
            );
            assert_eq!(people[0].org_role.as_deref(), Some("engineer"));
            assert_eq!(people[0].status, EmploymentStatus::Offboarded);
            assert_eq!(people[2].status, EmploymentStatus::Active);
        }
    }

    #[test]
    fn yaml_reads_a_list_or_a_people_object() {
        let list = "\
- loginNames: [alice@example.com, alice@github]
  displayName: Alice
  orgRole: engineer
  status: Terminated
- loginName: bob@example.com
";
        let wrapped = "people:\n  - loginName: alice@example.com\n    status: active\n";
        let people = parse_people(DirectoryFormat::Yaml, list).unwrap();
        assert_eq!(
            logins(&people),
            [
                vec!["alice@example.com", "alice@github"],
                vec!["bob@example.com"]
            ]
        );
        assert_eq!(people[0].status, EmploymentStatus::Offboarded);
        let people = parse_people(DirectoryFormat::Yaml, wrapped).unwrap();
        assert_eq!(people, [person(&["alice@example.com"])]);
    }

    #[test]
    fn people_carry_their_kubernetes_identities_in_every_format() {
        let csv = "loginName,orgRole,kubernetesUsers,kubernetesGroups\nbob@example.com,sre,bob;system:serviceaccount:ops:bob-bot, sre ;sre;oncall\n";
        let yaml = "- loginName: bob@example.com\n  kubernetesUsers: [bob, system:serviceaccount:ops:bob-bot]\n  kubernetesGroups: [sre, oncall]\n";
        let json = r#"[{"loginName": "bob@example.com", "kubernetesUsers": ["bob", "system:serviceaccount:ops:bob-bot"], "kubernetesGroups": ["sre", "oncall"]}]"#;
        for (format, text) in [
            (DirectoryFormat::Csv, csv),
            (DirectoryFormat::Yaml, yaml),
            (DirectoryFormat::Json, json),
        ] {
            let people = parse_people(format, text).unwrap();
            let d = Directory::build([("file", people)]).unwrap();
            assert!(d.same_person("bob", "Bob@Example.com"));
            assert!(d.same_person("system:serviceaccount:ops:bob-bot", "bob@example.com"));
            assert!(!d.same_person("carol", "bob@example.com"));
            let bob = d.person_of_user(" bob ").expect("bob is a person");
            assert_eq!(bob.kubernetes_groups, ["sre", "oncall"], "{format:?}");
            assert!(d.person_of_user("carol").is_none());
        }
        // One Kubernetes identity belongs to one person.
        let twice = "loginName,kubernetesUsers\na@x,bot\nb@x,bot\n";
        let people = parse_people(DirectoryFormat::Csv, twice).unwrap();
        assert!(Directory::build([("file", people)]).is_err());
    }

    #[test]
    fn a_source_without_organisational_roles_is_not_trusted() {
        let without = "loginName,displayName,department,status\na@x,A,it,active\nb@x,B,it,active\n";
        let people = parse_people(DirectoryFormat::Csv, without).unwrap();
        let problem = missing_org_roles(&people).expect("untrusted");
        assert!(
            problem.contains("none of its 2 active people") && problem.contains("orgRole column"),
            "{problem}"
        );
        // One role is enough; a list of leavers needs none.
        let with = "loginName,orgRole\na@x,it\nb@x,\n";
        assert_eq!(
            missing_org_roles(&parse_people(DirectoryFormat::Csv, with).unwrap()),
            None
        );
        let leavers = "loginName,status\na@x,offboarded\n";
        assert_eq!(
            missing_org_roles(&parse_people(DirectoryFormat::Csv, leavers).unwrap()),
            None
        );
    }

    #[test]
    fn hostile_yaml_is_refused_cheaply_and_clearly() {
        // "Billion laughs": every level multiplies the one below by nine.
        let mut bomb = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut previous = 'a';
        for level in 'b'..='j' {
            let refs: Vec<String> = (0..9).map(|_| format!("*{previous}")).collect();
            bomb.push_str(&format!("{level}: &{level} [{}]\n", refs.join(",")));
            previous = level;
        }
        // Refused by the alias budget rather than expanded.
        let e = parse_people(DirectoryFormat::Yaml, &bomb).expect_err("refused");
        assert!(e.to_string().contains("not valid YAML"), "{e}");

        let deep = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let e = parse_people(DirectoryFormat::Yaml, &deep).expect_err("refused");
        assert!(e.to_string().contains("not valid YAML"), "{e}");
    }

    #[test]
    fn oversized_sources_and_too_many_people_are_refused_saying_what_to_do() {
        let big = format!(
            "loginName\n{}",
            "x@example.com\n".repeat(MAX_SOURCE_BYTES / 14 + 1)
        );
        let e = parse_people(DirectoryFormat::Csv, &big).expect_err("too big");
        assert!(
            e.to_string().contains("at most") && e.to_string().contains("split"),
            "{e}"
        );

        let many: String = std::iter::once("loginName\n".to_string())
            .chain((0..=MAX_PEOPLE).map(|i| format!("u{i}@e.io\n")))
            .collect();
        assert!(many.len() <= MAX_SOURCE_BYTES);
        let e = parse_people(DirectoryFormat::Csv, &many).expect_err("too many");
        assert!(
            e.to_string().contains(&format!("at most {MAX_PEOPLE}")),
            "{e}"
        );
    }

    #[test]
    fn json_and_yaml_errors_name_the_entry_and_fix() {
        let cases = [
            (
                DirectoryFormat::Json,
                r#"[{"loginName": "a@x"}, {"loginName": "b@x"}, {"loginName": "c@x", "status": "gone"}]"#,
                "people.json entry 3: status \"gone\" is not one of active, offboarded \
                 (terminated, inactive and left also mean offboarded)",
            ),
            (
                DirectoryFormat::Yaml,
                "- loginName: a@x\n- displayName: Nobody\n",
                "people.yaml entry 2: no login name; give each person at least one",
            ),
            (
                DirectoryFormat::Yaml,
                "- alice@example.com\n",
                "people.yaml entry 1: expected a person with loginNames, displayName, orgRole \
                 and status",
            ),
            (
                DirectoryFormat::Json,
                r#"{"users": []}"#,
                "people.json: expected a list of people, or an object with a \"people\" list",
            ),
            (
                DirectoryFormat::Json,
                r#"{"people": {"loginName": "a@x"}}"#,
                "people.json: \"people\" must be a list of people",
            ),
            (
                DirectoryFormat::Yaml,
                "",
                "people.yaml: the file is empty: expected a list of people",
            ),
        ];
        for (format, text, expected) in cases {
            let origin = format!("people.{}", format.to_string().to_lowercase());
            assert_eq!(
                error_message(parse_people(format, text), &origin),
                expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn syntax_errors_say_the_format_and_where() {
        let json = error_message(
            parse_people(DirectoryFormat::Json, "[{\"loginName\": }]"),
            "p",
        );
        assert!(
            json.starts_with("p: not valid JSON: ") && json.contains("line 1"),
            "{json}"
        );
        let yaml = error_message(
            parse_people(DirectoryFormat::Yaml, "- loginName: a\n  - b: [\n"),
            "p",
        );
        assert!(
            yaml.starts_with("p: not valid YAML: ") && yaml.contains("line"),
            "{yaml}"
        );
        let wrong_type = error_message(
            parse_people(DirectoryFormat::Json, r#"[{"loginNames": "a@x"}]"#),
            "p",
        );
        assert!(
            wrong_type.starts_with("p entry 1: invalid type"),
            "{wrong_type}"
        );
    }

    #[test]
    fn format_follows_the_file_extension() {
        let cases = [
            ("people.csv", Some(DirectoryFormat::Csv)),
            ("PEOPLE.CSV", Some(DirectoryFormat::Csv)),
            ("people.json", Some(DirectoryFormat::Json)),
            ("people.yaml", Some(DirectoryFormat::Yaml)),
            ("team.people.yml", Some(DirectoryFormat::Yaml)),
            ("people.txt", None),
            ("csv", None),
        ];
        for (key, expected) in cases {
            assert_eq!(DirectoryFormat::from_key(key), expected, "{key}");
        }
    }

    #[test]
    fn inline_entries_are_strict_about_status() {
        let strict: Result<Person, _> =
            serde_json::from_str(r#"{"loginNames": ["a@x"], "status": "offboarded"}"#);
        assert!(strict.is_err());
        let person: Person =
            serde_json::from_str(r#"{"loginNames": ["a@x"], "status": "Offboarded"}"#).unwrap();
        assert_eq!(person.status, EmploymentStatus::Offboarded);
        let person: Person = serde_json::from_str(r#"{"loginNames": ["a@x"]}"#).unwrap();
        assert_eq!(person.status, EmploymentStatus::Active);
    }

    #[test]
    fn crd_schema_requires_a_login_and_a_known_status() {
        let schema = serde_json::to_value(schemars::schema_for!(Person)).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["loginNames"]));
        assert_eq!(schema["properties"]["loginNames"]["minItems"], 1);
        let status = schema.to_string();
        assert!(
            status.contains("\"Active\"") && status.contains("\"Offboarded\""),
            "{status}"
        );
        assert_eq!(
            serde_json::to_value(person(&["a@x"])).unwrap(),
            serde_json::json!({"loginNames": ["a@x"], "status": "Active"})
        );
    }

    #[test]
    fn a_persons_manager_is_read_from_every_format() {
        let csv = "email,manager\nerin@example.com, carol@example.com \nfrank@example.com,\n";
        let yaml = "- {loginName: erin@example.com, manager: carol@example.com}\n- {loginName: frank@example.com}\n";
        let json = r#"[{"loginName": "erin@example.com", "manager": "carol@example.com"}, {"loginName": "frank@example.com", "manager": " "}]"#;
        for (format, text) in [
            (DirectoryFormat::Csv, csv),
            (DirectoryFormat::Yaml, yaml),
            (DirectoryFormat::Json, json),
        ] {
            let people = parse_people(format, text).expect("parses");
            assert_eq!(
                people[0].manager.as_deref(),
                Some("carol@example.com"),
                "{format:?}"
            );
            assert_eq!(people[1].manager, None, "blank is none: {format:?}");
        }
    }

    #[test]
    fn identities_follow_from_e_mail_logins_under_the_clusters_rule() {
        let people = parse_people(
            DirectoryFormat::Yaml,
            "
- {loginName: Alice@Example.com, kubernetesUsers: [alice]}
- {loginNames: [bob@example.com, bob@github]}
- {loginName: robot}
",
        )
        .expect("people");
        let mapped = with_login_identities(people, "oidc:");
        let users: Vec<Vec<String>> = mapped.iter().map(|p| p.kubernetes_users.clone()).collect();
        assert_eq!(
            users,
            [
                vec!["alice".to_string(), "oidc:alice@example.com".to_string()],
                vec![
                    "oidc:bob@example.com".to_string(),
                    "oidc:bob@github".to_string()
                ],
                vec![],
            ]
        );
        let d = Directory::build([("inline", mapped)]).expect("directory");
        assert!(d.same_person("oidc:alice@example.com", "alice@example.com"));
        // A derived identity another person lists is refused, as any identity two claim.
        let clash = parse_people(
            DirectoryFormat::Yaml,
            "
- {loginName: alice@example.com}
- {loginName: eve@example.com, kubernetesUsers: ['oidc:alice@example.com']}
",
        )
        .expect("people");
        assert!(Directory::build([("inline", with_login_identities(clash, "oidc:"))]).is_err());
    }
}
