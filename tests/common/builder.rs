//! A typed builder for test configs: tables and keys are set through methods, so no test
//! fills a TOML template with string replacement (and a value can never break the syntax).
//! `build()` goes through `Config::from_toml`, the same path a config file takes.

use toml::{Table, Value};

/// A whole config: listener and admin on `127.0.0.1:0`, one upstream.
#[derive(Clone)]
pub struct ConfigBuilder {
    doc: Table,
}

/// One `[[route]]`.
#[derive(Clone)]
pub struct RouteBuilder(Table);

/// One `[[issuer]]`.
#[derive(Clone)]
pub struct IssuerBuilder(Table);

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::String(s.to_string())).collect())
}

/// Sets `value` at a dotted `path` (`auth.mode`), creating tables on the way.
fn set_path(table: &mut Table, path: &str, value: Value) {
    let mut keys: Vec<&str> = path.split('.').collect();
    let last = keys.pop().expect("a path names at least one key");
    let mut current = table;
    for key in keys {
        current = current
            .entry(key)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("{path}: {key} is not a table"));
    }
    current.insert(last.to_string(), value);
}

fn push(table: &mut Table, key: &str, item: Table) {
    match table.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(items) => items.push(Value::Table(item)),
        _ => panic!("{key} is not an array of tables"),
    }
}

impl ConfigBuilder {
    pub fn new(upstream: &str) -> ConfigBuilder {
        let mut doc = Table::new();
        set_path(&mut doc, "listener.address", "127.0.0.1:0".into());
        set_path(&mut doc, "admin.address", "127.0.0.1:0".into());
        set_path(&mut doc, "upstream.url", upstream.into());
        ConfigBuilder { doc }
    }

    /// Any key by its dotted path, e.g. `.set("auth.unmatched", "authenticated")`.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> ConfigBuilder {
        set_path(&mut self.doc, path, value.into());
        self
    }

    /// `[scopes.implies] scope = [implied…]`.
    pub fn implies(self, scope: &str, implied: &[&str]) -> ConfigBuilder {
        let path = format!("scopes.implies.{scope}");
        let value = strings(implied);
        let mut this = self;
        set_path(&mut this.doc, &path, value);
        this
    }

    pub fn issuer(mut self, issuer: IssuerBuilder) -> ConfigBuilder {
        push(&mut self.doc, "issuer", issuer.0);
        self
    }

    pub fn route(mut self, route: RouteBuilder) -> ConfigBuilder {
        push(&mut self.doc, "route", route.0);
        self
    }

    /// `[mcp]` with its two required keys.
    pub fn mcp(self, resource: &str, resource_name: &str) -> ConfigBuilder {
        self.set("mcp.resource", resource)
            .set("mcp.resource_name", resource_name)
    }

    /// Adds a config fragment as a file holds it (e.g. a documented recipe): its tables are
    /// merged key by key, its arrays of tables (`[[issuer]]`, `[[route]]`) appended.
    pub fn merge_toml(mut self, text: &str) -> ConfigBuilder {
        let fragment: Table = toml::from_str(text).unwrap_or_else(|e| panic!("fragment: {e}\n{text}"));
        for (key, value) in fragment {
            match (self.doc.get_mut(&key), value) {
                (Some(Value::Table(ours)), Value::Table(theirs)) => ours.extend(theirs),
                (Some(Value::Array(ours)), Value::Array(theirs)) => ours.extend(theirs),
                (_, value) => {
                    self.doc.insert(key, value);
                }
            }
        }
        self
    }

    /// Sets `key` (a dotted path) of the `index`th `[[issuer]]`.
    pub fn set_issuer(mut self, index: usize, key: &str, value: impl Into<Value>) -> ConfigBuilder {
        let issuer = self
            .doc
            .get_mut("issuer")
            .and_then(Value::as_array_mut)
            .and_then(|issuers| issuers.get_mut(index))
            .and_then(Value::as_table_mut)
            .unwrap_or_else(|| panic!("no issuer[{index}]"));
        set_path(issuer, key, value.into());
        self
    }

    /// The config as a file would hold it.
    pub fn toml(&self) -> String {
        toml::to_string(&self.doc).expect("a table serializes")
    }

    pub fn build(&self) -> scopegate::config::Config {
        scopegate::config::Config::from_toml(&self.toml(), "test.toml")
            .unwrap_or_else(|e| panic!("test config: {e}\n{}", self.toml()))
    }
}

impl RouteBuilder {
    /// A protected route named `name` on `path` (all methods, no particular scope).
    pub fn new(name: &str, path: &str) -> RouteBuilder {
        let mut table = Table::new();
        table.insert("name".into(), name.into());
        table.insert("path".into(), path.into());
        RouteBuilder(table)
    }

    pub fn scopes(self, scopes: &[&str]) -> RouteBuilder {
        self.set("scopes", strings(scopes))
    }

    pub fn any_scopes(self, alternatives: &[&[&str]]) -> RouteBuilder {
        let value = Value::Array(alternatives.iter().map(|set| strings(set)).collect());
        self.set("any_scopes", value)
    }

    pub fn methods(self, methods: &[&str]) -> RouteBuilder {
        self.set("methods", strings(methods))
    }

    pub fn public(self) -> RouteBuilder {
        self.set("public", true)
    }

    pub fn dry_run(self) -> RouteBuilder {
        self.set("mode", "dry_run")
    }

    pub fn mcp(self) -> RouteBuilder {
        self.set("mcp", true)
    }

    /// One `[[route.mcp_rule]]`: JSON-RPC `method` (glob), tool `name` (glob), scopes.
    pub fn mcp_rule(mut self, method: &str, name: Option<&str>, scopes: &[&str]) -> RouteBuilder {
        let mut rule = Table::new();
        rule.insert("method".into(), method.into());
        if let Some(name) = name {
            rule.insert("name".into(), name.into());
        }
        rule.insert("scopes".into(), strings(scopes));
        push(&mut self.0, "mcp_rule", rule);
        self
    }

    /// One `[[route.claim]]`: `claim` tested by `test` (`equals`, `equals_param`,
    /// `contains`, `one_of`) against `value`.
    pub fn claim(mut self, claim: &str, test: &str, value: impl Into<Value>) -> RouteBuilder {
        let mut rule = Table::new();
        rule.insert("claim".into(), claim.into());
        rule.insert(test.into(), value.into());
        push(&mut self.0, "claim", rule);
        self
    }

    pub fn set(mut self, key: &str, value: impl Into<Value>) -> RouteBuilder {
        set_path(&mut self.0, key, value.into());
        self
    }
}

impl IssuerBuilder {
    pub fn new(url: &str, audiences: &[&str]) -> IssuerBuilder {
        let mut table = Table::new();
        table.insert("url".into(), url.into());
        table.insert("audiences".into(), strings(audiences));
        IssuerBuilder(table)
    }

    /// `token_validation = "introspection"` with client credentials from a file.
    pub fn introspection(self, client_id: &str, secret_file: &std::path::Path) -> IssuerBuilder {
        self.set("token_validation", "introspection")
            .set("introspection.client_id", client_id)
            .set(
                "introspection.client_secret_file",
                secret_file.to_string_lossy().as_ref(),
            )
    }

    pub fn algorithms(self, algorithms: &[&str]) -> IssuerBuilder {
        self.set("algorithms", strings(algorithms))
    }

    pub fn set(mut self, key: &str, value: impl Into<Value>) -> IssuerBuilder {
        set_path(&mut self.0, key, value.into());
        self
    }
}

/// The parameters of a `Bearer` challenge (RFC 6750 §3), e.g. `error`, `scope`,
/// `resource_metadata`; quoted values unquoted. `None` for no header or another scheme.
pub fn bearer_params(header: Option<&str>) -> Option<std::collections::BTreeMap<String, String>> {
    scopegate::client::challenge::BearerChallenge::parse(header?).map(|c| c.params().clone())
}
