//! The config file as a spanned TOML document, read one section at a time.
//!
//! serde stops at the first mistake, so a whole-file `Deserialize` shows one problem per
//! run and reports a missing section as an error at line 1. Here each section (and each
//! `[[route]]` and `[[issuer]]` on its own) is deserialized separately; a key that fails is
//! reported with its TOML path and line, set aside, and the section read again, so one
//! `scopegate check` shows every unknown key, wrong type and unknown enum value at once.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::problems::{ConfigError, Issues};

/// A section or element whose keys keep failing is given up after this many rounds.
const MAX_ROUNDS: usize = 64;

/// A parsed, not yet deserialized, config file.
pub struct Document<'i> {
    root: Spanned<DeTable<'i>>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
}

/// What reading one section gave.
pub enum Section<T> {
    /// Not in the file.
    Absent,
    Read(T),
    /// In the file but not readable; its problems are recorded.
    Unreadable,
}

impl<'i> Document<'i> {
    /// Parses TOML syntax; invalid TOML stays one error with its line and column.
    pub fn parse(text: &'i str, origin: &str) -> Result<Document<'i>, ConfigError> {
        let root = DeTable::parse(text).map_err(|mut e| {
            // With the text, the error renders its line, column and a pointer into the line.
            e.set_input(Some(text));
            ConfigError::Syntax {
                path: origin.to_string(),
                message: e.to_string(),
            }
        })?;
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Ok(Document { root, line_starts })
    }

    /// 1-based line of a byte offset.
    fn line_at(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset).max(1)
    }

    /// Records every top-level key that is not one of `known`.
    pub fn check_sections(&self, known: &[&str], issues: &mut Issues) {
        for (key, _) in self.root.get_ref().iter() {
            if !known.contains(&key.get_ref().as_ref()) {
                issues.push_at(
                    key.get_ref().to_string(),
                    self.line_at(key.span().start),
                    format!("unknown section, expected one of {}", known.join(", ")),
                );
            }
        }
    }

    /// Reads the table at top-level `key`.
    pub fn table<T: DeserializeOwned>(&self, key: &str, issues: &mut Issues) -> Section<T> {
        match self.root.get_ref().get(key) {
            None => Section::Absent,
            Some(value) if value.get_ref().is_table() => match self.read(key, value, issues) {
                Some(read) => Section::Read(read),
                None => Section::Unreadable,
            },
            Some(value) => {
                issues.push_at(
                    key,
                    self.line_at(value.span().start),
                    format!("must be a table: write [{key}] on a line of its own, then its keys"),
                );
                Section::Unreadable
            }
        }
    }

    /// Reads the array of tables at top-level `key`, each element on its own so that every
    /// element's problems are reported. Unreadable when any element is.
    pub fn array<T: DeserializeOwned>(&self, key: &str, issues: &mut Issues) -> Section<Vec<T>> {
        let Some(value) = self.root.get_ref().get(key) else {
            return Section::Absent;
        };
        let Some(elements) = value.get_ref().as_array() else {
            issues.push_at(
                key,
                self.line_at(value.span().start),
                format!("must be an array of tables: write [[{key}]] before each one"),
            );
            return Section::Unreadable;
        };
        let mut read = Vec::new();
        let mut unreadable = false;
        for (index, element) in elements.iter().enumerate() {
            match self.read(&format!("{key}[{index}]"), element, issues) {
                Some(element) => read.push(element),
                None => unreadable = true,
            }
        }
        if unreadable {
            Section::Unreadable
        } else {
            Section::Read(read)
        }
    }

    /// Deserializes one section or element. Each failing key is recorded and removed before
    /// the next round; a missing required key (or a key set aside that turns out to be
    /// required) ends the attempt.
    fn read<T: DeserializeOwned>(&self, at: &str, original: &Spanned<DeValue<'i>>, issues: &mut Issues) -> Option<T> {
        // Keys are removed from `value`; paths are always found in `original`, so that a
        // removed `[[table]]` does not renumber the ones after it.
        let mut value = original.clone();
        let mut set_aside: Vec<String> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let error = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(read) if set_aside.is_empty() => return Some(read),
                // Every failing key is recorded already; the stand-in values are not the file.
                Ok(_) => return None,
                Err(error) => error,
            };
            let span = error.span().unwrap_or_else(|| value.span());
            let message = error.message().trim_end_matches('\n');
            if let Some(field) = missing_field(message) {
                let (table, table_span) =
                    locate_table(at, original, span.start).unwrap_or_else(|| (at.to_string(), original.span()));
                let path = format!("{table}.{field}");
                // A required key set aside for a bad value is reported once, for its value.
                if !set_aside.iter().any(|p| is_within(p, &path)) {
                    issues.push_at(
                        path,
                        self.line_at(table_span.start),
                        format!(
                            "is required but missing; add `{field} = …` to {}",
                            describe_table(&table)
                        ),
                    );
                }
                // Set the incomplete table aside too, to read the rest of the section.
                if table == at || !remove_entry(&mut value, span.start) {
                    return None;
                }
                set_aside.push(table);
                continue;
            }
            let (path, key_span) =
                locate(at, original, span.start).unwrap_or_else(|| (at.to_string(), original.span()));
            issues.push_at(path.clone(), self.line_at(key_span.start), message);
            if path == at || !remove_entry(&mut value, span.start) {
                return None;
            }
            set_aside.push(path);
        }
        None
    }

    /// The line of a TOML path such as `route[2].scopes[1]`: of the key itself, or of the
    /// nearest enclosing key that is written in the file.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        let mut line = None;
        for segment in path.split('.') {
            let (name, indexes) = split_indexes(segment);
            let table = match value {
                None => Some(self.root.get_ref()),
                Some(v) => v.get_ref().as_table(),
            };
            let Some((key, found)) = table.and_then(|t| t.get_key_value(name)) else {
                break;
            };
            line = Some(self.line_at(key.span().start));
            value = Some(found);
            for index in indexes {
                match value.and_then(|v| v.get_ref().as_array()).and_then(|a| a.get(index)) {
                    Some(element) => {
                        line = Some(self.line_at(element.span().start));
                        value = Some(element);
                    }
                    None => return line,
                }
            }
        }
        line
    }
}

/// `route[2]` → (`route`, [2]); `any_scopes[1][0]` → (`any_scopes`, [1, 0]).
fn split_indexes(segment: &str) -> (&str, Vec<usize>) {
    let name_end = segment.find('[').unwrap_or(segment.len());
    let indexes = segment[name_end..]
        .split(['[', ']'])
        .filter_map(|n| n.parse().ok())
        .collect();
    (&segment[..name_end], indexes)
}

/// serde's "missing field `url`" → `url`.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
}

/// A table as its header is written: `[issuer.introspection]` for `issuer[1].introspection`,
/// `[[route]]` for `route[2]`.
fn describe_table(path: &str) -> String {
    let name: String = path
        .split('[')
        .map(|part| part.split_once(']').map_or(part, |(_, rest)| rest))
        .collect();
    if path.ends_with(']') {
        format!("[[{name}]]")
    } else {
        format!("[{name}]")
    }
}

// A `[table]`'s span is its header only, so finding what an offset belongs to means
// visiting every table; keys, plain values and inline arrays span what they hold.

/// The key or array element under `value` (whose path is `at`) that holds `offset`, with
/// the span of its key (or of the element): where a problem there is shown.
fn locate(at: &str, value: &Spanned<DeValue<'_>>, offset: usize) -> Option<(String, Range<usize>)> {
    match value.get_ref() {
        DeValue::Table(table) => table.iter().find_map(|(key, entry)| {
            let path = format!("{at}.{}", key.get_ref());
            if key.span().contains(&offset) {
                return Some((path, key.span()));
            }
            match locate(&path, entry, offset) {
                // A scalar's problem is shown on its key's line.
                Some((deeper, _)) if deeper == path => Some((path, key.span())),
                found => found,
            }
        }),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(index, element)| locate(&format!("{at}[{index}]"), element, offset))
            .or_else(|| value.span().contains(&offset).then(|| (at.to_string(), value.span()))),
        _ => value.span().contains(&offset).then(|| (at.to_string(), value.span())),
    }
}

/// The table under `value` whose header (or inline span) holds `offset`: where serde
/// reports a key missing from it.
fn locate_table(at: &str, value: &Spanned<DeValue<'_>>, offset: usize) -> Option<(String, Range<usize>)> {
    let deeper = match value.get_ref() {
        DeValue::Table(table) => table
            .iter()
            .find_map(|(key, entry)| locate_table(&format!("{at}.{}", key.get_ref()), entry, offset)),
        DeValue::Array(array) => array
            .iter()
            .enumerate()
            .find_map(|(index, element)| locate_table(&format!("{at}[{index}]"), element, offset)),
        _ => return None,
    };
    deeper.or_else(|| {
        (value.get_ref().is_table() && value.span().contains(&offset)).then(|| (at.to_string(), value.span()))
    })
}

/// Removes the key that holds `offset`: the deepest key of any table under `value`
/// (tables in arrays of tables included); a problem inside a plain array removes the key
/// that holds the array. False when no key holds `offset`.
fn remove_entry(value: &mut Spanned<DeValue<'_>>, offset: usize) -> bool {
    match value.get_mut() {
        DeValue::Table(table) => {
            let holder = table
                .iter()
                .find(|(key, entry)| key.span().contains(&offset) || holds(entry, offset))
                .map(|(key, _)| key.get_ref().to_string());
            match holder {
                Some(key) => table.remove(key.as_str()).is_some(),
                None => table.iter_mut().any(|(_, entry)| remove_entry(entry, offset)),
            }
        }
        DeValue::Array(array) => match array
            .iter()
            .position(|element| element.get_ref().is_table() && element.span().contains(&offset))
        {
            Some(index) => {
                let mut kept = toml::de::DeArray::new();
                for (_, element) in array.iter().enumerate().filter(|(i, _)| *i != index) {
                    kept.push(element.clone());
                }
                *array = kept;
                true
            }
            None => array.iter_mut().any(|element| remove_entry(element, offset)),
        },
        _ => false,
    }
}

/// Whether `offset` lies in `value` itself: a table's header, or a value that holds no
/// tables (`[[tables]]` in an array are visited one by one instead).
fn holds(value: &Spanned<DeValue<'_>>, offset: usize) -> bool {
    match value.get_ref() {
        DeValue::Array(array) if array.iter().any(|e| e.get_ref().is_table()) => false,
        _ => value.span().contains(&offset),
    }
}

/// `route[1].scopes[0]` is within `route[1].scopes` and `route[1]`.
fn is_within(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Sections that are in the file but could not be read. Compile steps that read one of
/// them run on stand-ins, and their problems are dropped: those would be about the
/// stand-ins, not about the file.
#[derive(Debug, Default)]
pub(super) struct Unread(Vec<&'static str>);

impl Unread {
    /// Reads an optional table; left out, it takes its defaults.
    pub(super) fn table<T: DeserializeOwned + Default>(
        &mut self,
        document: &Document<'_>,
        name: &'static str,
        issues: &mut Issues,
    ) -> T {
        self.settle(name, document.table(name, issues))
    }

    /// Reads an array of tables; left out, it is empty.
    pub(super) fn array<T: DeserializeOwned>(
        &mut self,
        document: &Document<'_>,
        name: &'static str,
        issues: &mut Issues,
    ) -> Vec<T> {
        self.settle(name, document.array(name, issues))
    }

    /// Reads a table the file must have; `example` is the least it must hold.
    pub(super) fn required<T: DeserializeOwned + Default>(
        &mut self,
        document: &Document<'_>,
        name: &'static str,
        example: &str,
        issues: &mut Issues,
    ) -> T {
        let section = document.table(name, issues);
        if let Section::Absent = section {
            issues.push(
                name,
                format!("is missing: add a [{name}] table with at least {example}"),
            );
            self.0.push(name);
        }
        self.settle(name, section)
    }

    fn settle<T: Default>(&mut self, name: &'static str, section: Section<T>) -> T {
        match section {
            Section::Read(read) => read,
            Section::Absent => T::default(),
            Section::Unreadable => {
                self.0.push(name);
                T::default()
            }
        }
    }

    /// Runs one compile step that reads `sections`.
    pub(super) fn step<T>(&self, sections: &[&str], issues: &mut Issues, compile: impl FnOnce(&mut Issues) -> T) -> T {
        if sections.iter().any(|name| self.0.contains(name)) {
            compile(&mut Issues::default())
        } else {
            compile(issues)
        }
    }
}

#[cfg(test)]
mod tests;
