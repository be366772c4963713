//! Certificate subjects as structures: distinguished names read from RFC 4514 text (the
//! configuration) or from a certificate, written back as escaped RFC 4514 text, and the rule by
//! which a configured subject accepts a certificate's.

use std::fmt;

/// The OID of the common name (`id-at-commonName`).
const COMMON_NAME: &str = "2.5.4.3";

/// How many characters of a subject a log line shows: a client chooses its certificate's subject.
pub(crate) const SHOWN_CHARS: usize = 256;

/// Attribute types known by name: the OID, the name written, and other names read (any case).
const TYPES: &[(&str, &str, &[&str])] = &[
    ("2.5.4.3", "CN", &["commonName"]),
    ("2.5.4.4", "SN", &["surname"]),
    ("2.5.4.5", "serialNumber", &[]),
    ("2.5.4.6", "C", &["countryName"]),
    ("2.5.4.7", "L", &["localityName"]),
    ("2.5.4.8", "ST", &["stateOrProvinceName"]),
    ("2.5.4.9", "STREET", &["streetAddress"]),
    ("2.5.4.10", "O", &["organizationName"]),
    ("2.5.4.11", "OU", &["organizationalUnitName"]),
    ("2.5.4.12", "title", &[]),
    ("2.5.4.17", "postalCode", &[]),
    ("2.5.4.42", "GN", &["givenName"]),
    ("2.5.4.43", "initials", &[]),
    ("2.5.4.44", "generationQualifier", &[]),
    ("2.5.4.46", "dnQualifier", &[]),
    ("2.5.4.65", "pseudonym", &[]),
    ("2.5.4.97", "organizationIdentifier", &[]),
    ("0.9.2342.19200300.100.1.1", "UID", &["userId"]),
    ("0.9.2342.19200300.100.1.25", "DC", &["domainComponent"]),
    ("1.2.840.113549.1.9.1", "emailAddress", &["E", "email"]),
];

/// The value of one attribute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AttributeValue {
    /// A value of a string type, decoded.
    Text(String),
    /// Any other value, or a string whose bytes its type does not allow: its DER encoding,
    /// written `#hex`. It matches nothing, not even itself.
    Undecoded(Vec<u8>),
}

/// One attribute of a name: its type as a dotted OID (`2.5.4.3`) and its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Attribute {
    pub oid: String,
    pub value: AttributeValue,
}

/// A distinguished name: its relative distinguished names (RDNs) in the order of the DER
/// encoding, most significant first (RFC 4514 text writes them the other way round), each a set
/// of attributes kept in the order read.
///
/// `==` is structural; whether a certificate is the one a configured subject names is
/// [`SubjectName::accepts`], where an undecoded value equals nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DistinguishedName {
    rdns: Vec<Vec<Attribute>>,
}

impl DistinguishedName {
    /// A name of these RDNs, in DER order.
    pub(crate) fn new(rdns: Vec<Vec<Attribute>>) -> Self {
        Self { rdns }
    }

    /// Reads RFC 4514 text such as `CN=entra-provisioning,O=Acme`; runs when the configuration
    /// is loaded. The error says what is wrong and how to write it.
    ///
    /// Beyond RFC 4514, spaces around `,`, `+` and `=` are allowed and ignored; a space that
    /// belongs to a value at its start or end is escaped (`\ `). Refused: empty text, an empty
    /// value, an unknown attribute type name, unescaped `"`, `;`, `<`, `>` or control
    /// characters, a `\` that escapes nothing, and `#hex` values (write the value as text).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Err("is empty: write a subject such as CN=entra-provisioning".into());
        }
        let mut reader = Reader { text, at: 0 };
        let mut rdns = Vec::new();
        let mut rdn = Vec::new();
        loop {
            rdn.push(reader.attribute()?);
            match reader.next() {
                None => break,
                Some(',') => rdns.push(std::mem::take(&mut rdn)),
                // `+` joins another attribute to the same RDN; a value stops at nothing else.
                Some(_) => {}
            }
        }
        rdns.push(rdn);
        rdns.reverse();
        Ok(Self { rdns })
    }

    /// Whether the name has no RDN at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.rdns.iter().flatten()
    }

    /// The value of the name's only common name: `None` when it has none, more than one (which
    /// of them would be meant is ambiguous), or one that is not text.
    fn sole_common_name(&self) -> Option<&str> {
        let mut names = self.attributes().filter(|a| a.oid == COMMON_NAME);
        match (names.next(), names.next()) {
            (Some(Attribute { value: AttributeValue::Text(name), .. }), None) => Some(name.as_str()),
            _ => None,
        }
    }

    /// The name as a log line shows it: escaped RFC 4514 text, cut after [`SHOWN_CHARS`]
    /// characters with `…`.
    pub(crate) fn shown(&self) -> String {
        let text = self.to_string();
        if text.chars().nth(SHOWN_CHARS).is_none() {
            return text;
        }
        let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
        cut.push('…');
        cut
    }
}

/// Escaped RFC 4514 text: RDNs last first, joined by `,` without spaces; attributes of one RDN
/// joined by `+`; known types by name, others as a dotted OID; values escaped so that the text
/// reads back as the same name and shows no character that could pass for another.
impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().rev().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, attribute) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                let name = TYPES.iter().find(|(oid, ..)| *oid == attribute.oid).map_or(&*attribute.oid, |t| t.1);
                write!(f, "{name}=")?;
                match &attribute.value {
                    AttributeValue::Text(text) => write_escaped(f, text)?,
                    AttributeValue::Undecoded(der) => {
                        f.write_str("#")?;
                        for byte in der {
                            write!(f, "{byte:02X}")?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes a value with RFC 4514 §2.4's escapes, and `\XX` for each byte of a character that
/// does not show itself: controls, spaces other than U+0020, and invisible formatting (a
/// soft hyphen, zero-width and bidirectional marks).
fn write_escaped(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => write!(f, "\\{c}")?,
            '#' if i == 0 => f.write_str("\\#")?,
            ' ' if i == 0 || i == last => f.write_str("\\ ")?,
            c if hidden(c) => {
                for byte in c.encode_utf8(&mut [0; 4]).bytes() {
                    write!(f, "\\{byte:02X}")?;
                }
            }
            c => write!(f, "{c}")?,
        }
    }
    Ok(())
}

fn hidden(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c, '\u{AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}')
        || matches!(c, '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// An entry of `client_certificates.subjects`, read from RFC 4514 text when the configuration
/// is loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct SubjectName(DistinguishedName);

impl TryFrom<String> for SubjectName {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        DistinguishedName::parse(&text).map(Self).map_err(|reason| format!("not RFC 4514 text: {reason}"))
    }
}

impl SubjectName {
    /// Whether a certificate with this subject is the one the entry names. Runs per request.
    ///
    /// An entry of one common name alone (`CN=x`) accepts a subject holding exactly one common
    /// name, `x`, whatever else it holds; a subject with two common names is never accepted so.
    /// Any other entry accepts only the same name: as many RDNs, in the same order, each the
    /// same set of attributes. Types compare by OID (so by name in any case); values compare
    /// exactly, case and spaces included, and a value that is not text compares equal to
    /// nothing.
    pub(crate) fn accepts(&self, subject: &DistinguishedName) -> bool {
        match self.0.rdns.as_slice() {
            [rdn] if rdn.len() == 1 && rdn[0].oid == COMMON_NAME => {
                subject.sole_common_name().is_some_and(|name| Some(name) == self.0.sole_common_name())
            }
            _ => same_name(&self.0, subject),
        }
    }
}

fn same_name(a: &DistinguishedName, b: &DistinguishedName) -> bool {
    a.rdns.len() == b.rdns.len() && a.rdns.iter().zip(&b.rdns).all(|(x, y)| same_set(x, y))
}

/// Whether two RDNs hold the same attributes, in whatever order (an RDN is a SET).
fn same_set(a: &[Attribute], b: &[Attribute]) -> bool {
    fn sorted(rdn: &[Attribute]) -> Vec<&Attribute> {
        let mut attributes: Vec<&Attribute> = rdn.iter().collect();
        attributes.sort();
        attributes
    }
    a.len() == b.len()
        && sorted(a).into_iter().zip(sorted(b)).all(|(x, y)| {
            x.oid == y.oid
                && matches!((&x.value, &y.value), (AttributeValue::Text(p), AttributeValue::Text(q)) if p == q)
        })
}

/// A position in RFC 4514 text being read.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.at..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += c.len_utf8();
        Some(c)
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(' ') {
            self.at += 1;
        }
    }

    /// The character count up to here, 1-based, for messages.
    fn column(&self) -> usize {
        self.text[..self.at].chars().count() + 1
    }

    /// `type=value`, with the spaces around it; stops before the `,` or `+` that follows.
    fn attribute(&mut self) -> Result<Attribute, String> {
        self.skip_spaces();
        let start = self.at;
        while self.peek().is_some_and(|c| !matches!(c, '=' | ',' | '+')) {
            self.next();
        }
        let name = self.text[start..self.at].trim_end();
        match self.peek() {
            Some('=') if !name.is_empty() => {}
            Some('=') => return Err(format!("no attribute type before the '=' at character {}", self.column())),
            Some(separator) if name.is_empty() => {
                return Err(format!(
                    "no attribute before the '{separator}' at character {}: remove the extra separator",
                    self.column()
                ));
            }
            None if name.is_empty() => return Err("no attribute after the last separator: remove it".into()),
            _ => return Err(format!("{name:?} has no '=': write TYPE=value, e.g. CN=entra-provisioning")),
        }
        let oid = attribute_type(name)?;
        self.next();
        self.skip_spaces();
        let value = self.value(name)?;
        Ok(Attribute { oid, value: AttributeValue::Text(value) })
    }

    /// A value, its escapes decoded and the unescaped spaces after it dropped.
    fn value(&mut self, name: &str) -> Result<String, String> {
        if self.peek() == Some('#') {
            return Err(format!(
                "{name}=#… (a hex-encoded BER value) is not supported: write the value as text (a '#' that starts a value is escaped as \\#)"
            ));
        }
        let mut bytes = Vec::new();
        // Bytes up to the last one that is not an unescaped space: spaces before a separator
        // are padding, and a value's own trailing space is escaped.
        let mut kept = 0;
        while let Some(c) = self.peek() {
            match c {
                ',' | '+' => break,
                '\\' => {
                    self.next();
                    self.escape(&mut bytes)?;
                    kept = bytes.len();
                    continue;
                }
                '"' | ';' | '<' | '>' => {
                    return Err(format!("a '{c}' in a value must be escaped: escape it as \\{c}"));
                }
                c if c.is_control() => {
                    let escaped: String = c.encode_utf8(&mut [0; 4]).bytes().map(|b| format!("\\{b:02X}")).collect();
                    return Err(format!("a control character in a value must be escaped: write it as {escaped}"));
                }
                ' ' => bytes.push(b' '),
                c => {
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    kept = bytes.len();
                }
            }
            self.next();
        }
        bytes.truncate(kept);
        let value =
            String::from_utf8(bytes).map_err(|_| format!("the \\XX escapes in the value of {name} are not UTF-8"))?;
        if value.is_empty() {
            return Err(format!("{name} has no value: write {name}=value"));
        }
        Ok(value)
    }

    /// What follows a `\`: one of the characters RFC 4514 lets be escaped, or two hex digits
    /// (one byte of the UTF-8 encoding).
    fn escape(&mut self, bytes: &mut Vec<u8>) -> Result<(), String> {
        const ESCAPABLE: &str = " \"#+,;<=>\\";
        let Some(c) = self.next() else {
            return Err("a '\\' ends the text: escape a backslash as \\\\".into());
        };
        if ESCAPABLE.contains(c) {
            bytes.push(c as u8);
            return Ok(());
        }
        let high = c.to_digit(16);
        let low = self.peek().and_then(|d| d.to_digit(16));
        match (high, low) {
            (Some(high), Some(low)) => {
                self.next();
                bytes.push((high * 16 + low) as u8);
                Ok(())
            }
            _ => Err(format!(
                "\\{c} is not an escape: a '\\' goes before a space, one of \" # + , ; < = > \\ or two hex digits (\\2C is a comma)"
            )),
        }
    }
}

/// The OID of an attribute type written by name (any case) or as a dotted OID.
fn attribute_type(name: &str) -> Result<String, String> {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        let arcs: Vec<&str> = name.split('.').collect();
        let arc_ok = |arc: &&str| {
            !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()) && (arc.len() == 1 || !arc.starts_with('0'))
        };
        if arcs.len() < 2 || !arcs.iter().all(arc_ok) {
            return Err(format!("{name:?} is not a dotted OID such as 2.5.4.3"));
        }
        return Ok(name.to_owned());
    }
    let known = |(_, written, others): &&(&str, &str, &[&str])| {
        written.eq_ignore_ascii_case(name) || others.iter().any(|o| o.eq_ignore_ascii_case(name))
    };
    match TYPES.iter().find(known) {
        Some((oid, ..)) => Ok((*oid).to_owned()),
        None => Err(format!(
            "unknown attribute type {name:?}: use CN, O, OU, C, L, ST, STREET, DC, UID, emailAddress, serialNumber, \
             title, SN, GN or a dotted OID such as 2.5.4.3"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(oid: &str, value: &str) -> Attribute {
        Attribute { oid: oid.into(), value: AttributeValue::Text(value.into()) }
    }

    const O: &str = "2.5.4.10";
    const CN: &str = COMMON_NAME;

    /// A name from its RDNs in DER order, each given as (OID, value) pairs.
    fn der(rdns: &[&[(&str, &str)]]) -> DistinguishedName {
        DistinguishedName::new(
            rdns.iter().map(|rdn| rdn.iter().map(|(oid, value)| text(oid, value)).collect()).collect(),
        )
    }

    fn entry(text: &str) -> SubjectName {
        SubjectName::try_from(text.to_owned()).unwrap()
    }

    #[test]
    fn rfc_4514_text_reads_last_rdn_first_with_escapes_and_multi_valued_rdns() {
        for (text, expected) in [
            ("CN=entra-provisioning", der(&[&[(CN, "entra-provisioning")]])),
            ("CN=a,O=Acme", der(&[&[(O, "Acme")], &[(CN, "a")]])),
            ("cn = a , o=Acme", der(&[&[(O, "Acme")], &[(CN, "a")]])),
            ("commonName=a,organizationName=Acme", der(&[&[(O, "Acme")], &[(CN, "a")]])),
            ("2.5.4.3=a", der(&[&[(CN, "a")]])),
            ("CN=entra-provisioning\\, O=Acme", der(&[&[(CN, "entra-provisioning, O=Acme")]])),
            ("CN=entra-provisioning\\2C O=Acme", der(&[&[(CN, "entra-provisioning, O=Acme")]])),
            ("CN=a+O=b,DC=example", der(&[&[("0.9.2342.19200300.100.1.25", "example")], &[(CN, "a"), (O, "b")]])),
            ("CN=\\ padded\\ ", der(&[&[(CN, " padded ")]])),
            ("CN=\\#1", der(&[&[(CN, "#1")]])),
            ("CN=a#b=c", der(&[&[(CN, "a#b=c")]])),
            ("CN=\\\\\\\"\\+\\;\\<\\>\\=", der(&[&[(CN, "\\\"+;<>=")]])),
            ("CN=Lu\\C4\\8Di\\C4\\87", der(&[&[(CN, "Lučić")]])),
            ("CN=Lučić", der(&[&[(CN, "Lučić")]])),
            (
                "E=ops@example.com,UID=42",
                der(&[&[("0.9.2342.19200300.100.1.1", "42")], &[("1.2.840.113549.1.9.1", "ops@example.com")]]),
            ),
            ("emailAddress=ops@example.com", der(&[&[("1.2.840.113549.1.9.1", "ops@example.com")]])),
            (
                "serialNumber=7,L=Paris,ST=IDF,C=FR,OU=IT",
                der(&[
                    &[("2.5.4.11", "IT")],
                    &[("2.5.4.6", "FR")],
                    &[("2.5.4.8", "IDF")],
                    &[("2.5.4.7", "Paris")],
                    &[("2.5.4.5", "7")],
                ]),
            ),
        ] {
            assert_eq!(DistinguishedName::parse(text).as_ref(), Ok(&expected), "{text}");
        }
    }

    #[test]
    fn malformed_text_is_refused_saying_why() {
        for (text, says) in [
            ("", "is empty"),
            ("   ", "is empty"),
            ("entra-provisioning", "has no '='"),
            ("CN=a,,O=b", "no attribute before the ',' at character 6"),
            ("CN=a,", "no attribute after the last separator"),
            ("+CN=a", "no attribute before the '+' at character 1"),
            ("=a", "no attribute type before the '=' at character 1"),
            ("CN=", "CN has no value"),
            ("CN=  ,O=b", "CN has no value"),
            ("Name=x", "unknown attribute type \"Name\""),
            ("C N=x", "unknown attribute type"),
            ("2.5.04.3=x", "not a dotted OID"),
            ("2=x", "not a dotted OID"),
            ("2.5.4.=x", "not a dotted OID"),
            ("CN=#0C03616263", "hex-encoded BER value) is not supported"),
            ("CN=a;O=b", "escape it as \\;"),
            ("CN=\"a\"", "escape it as \\\""),
            ("CN=<a>", "escape it as \\<"),
            ("CN=a\u{1}", "\\01"),
            ("CN=a\\", "ends the text"),
            ("CN=a\\x", "\\x is not an escape"),
            ("CN=a\\2", "\\2 is not an escape"),
            ("CN=a\\C4", "not UTF-8"),
        ] {
            let error = DistinguishedName::parse(text).unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
        let error = SubjectName::try_from("CN=a;O=b".to_owned()).unwrap_err();
        assert!(error.starts_with("not RFC 4514 text: "), "{error}");
    }

    #[test]
    fn rendering_escapes_what_could_pass_for_structure_and_reads_back_the_same() {
        for (name, expected) in [
            (der(&[&[(O, "Acme")], &[(CN, "entra-provisioning")]]), "CN=entra-provisioning,O=Acme"),
            (der(&[&[(CN, "entra-provisioning, O=Acme")]]), "CN=entra-provisioning\\, O=Acme"),
            (der(&[&[(CN, "a"), (O, "b")]]), "CN=a+O=b"),
            (der(&[&[(CN, "a+O=b")]]), "CN=a\\+O=b"),
            (der(&[&[(CN, " #x ")]]), "CN=\\ #x\\ "),
            (der(&[&[(CN, "#x")]]), "CN=\\#x"),
            (der(&[&[(CN, "x#")]]), "CN=x#"),
            (der(&[&[(CN, "q\"\\;<>")]]), "CN=q\\\"\\\\\\;\\<\\>"),
            (der(&[&[(CN, "a\nb\0")]]), "CN=a\\0Ab\\00"),
            (der(&[&[(CN, "admin\u{202E}nimda")]]), "CN=admin\\E2\\80\\AEnimda"),
            (der(&[&[(CN, "a\u{A0}b")]]), "CN=a\\C2\\A0b"),
            (der(&[&[(CN, "Lučić")]]), "CN=Lučić"),
            (der(&[&[("1.2.3.4", "x")]]), "1.2.3.4=x"),
            (
                der(&[&[("0.9.2342.19200300.100.1.25", "com")], &[("0.9.2342.19200300.100.1.25", "example")]]),
                "DC=example,DC=com",
            ),
        ] {
            assert_eq!(name.to_string(), expected);
            assert_eq!(DistinguishedName::parse(expected), Ok(name), "{expected} reads back");
        }
        let undecoded = DistinguishedName::new(vec![vec![Attribute {
            oid: CN.into(),
            value: AttributeValue::Undecoded(vec![0x14, 0x01, 0x61]),
        }]]);
        assert_eq!(undecoded.to_string(), "CN=#140161");
        assert_eq!(DistinguishedName::default().to_string(), "");
    }

    #[test]
    fn every_short_text_is_refused_or_read_back_the_same_from_its_rendering() {
        // All texts of up to five characters over an alphabet of the characters that matter.
        let alphabet: Vec<char> = "CN=,+\\#\"; 2é".chars().collect();
        let mut texts = vec![String::new()];
        let mut read = 0;
        for _ in 0..5 {
            texts = texts.iter().flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}"))).collect();
            for text in &texts {
                if let Ok(name) = DistinguishedName::parse(text) {
                    read += 1;
                    assert_eq!(DistinguishedName::parse(&name.to_string()).as_ref(), Ok(&name), "{text:?} as {name}");
                }
            }
        }
        assert!(read > 100, "only {read} texts read");
    }

    #[test]
    fn a_long_subject_is_shown_cut() {
        let long = der(&[&[(O, &"o".repeat(1000))], &[(CN, "a")]]);
        let shown = long.shown();
        assert_eq!(shown.chars().count(), SHOWN_CHARS + 1);
        assert!(shown.starts_with("CN=a,O=ooo") && shown.ends_with('…'), "{shown}");
        let short = der(&[&[(CN, "a")]]);
        assert_eq!(short.shown(), "CN=a");
    }

    #[test]
    fn a_common_name_entry_needs_exactly_one_common_name() {
        let entry = entry("CN=entra-provisioning");
        assert!(entry.accepts(&der(&[&[(CN, "entra-provisioning")]])));
        assert!(entry.accepts(&der(&[&[(O, "Acme")], &[(CN, "entra-provisioning")]])));
        assert!(entry.accepts(&der(&[&[(CN, "entra-provisioning"), (O, "Acme")]])));
        for refused in [
            der(&[&[(CN, "entra-provisioning")], &[(CN, "other")]]),
            der(&[&[(CN, "other")], &[(CN, "entra-provisioning")]]),
            der(&[&[(CN, "entra-provisioning")], &[(CN, "entra-provisioning")]]),
            der(&[&[(CN, "entra-provisioning"), (CN, "other")]]),
            der(&[&[(CN, "entra-provisioning, O=Acme")]]),
            der(&[&[(CN, "Entra-Provisioning")]]),
            der(&[&[(CN, "entra-provisioning ")]]),
            der(&[&[(O, "entra-provisioning")]]),
            der(&[]),
        ] {
            assert!(!entry.accepts(&refused), "{refused}");
        }
        let undecoded = DistinguishedName::new(vec![vec![Attribute {
            oid: CN.into(),
            value: AttributeValue::Undecoded(b"x".to_vec()),
        }]]);
        assert!(!entry.accepts(&undecoded));
    }

    #[test]
    fn a_full_subject_entry_needs_the_same_rdns_in_the_order_rfc_4514_writes_them() {
        // Written CN first, the DER holds O first.
        let entry_cn_first = entry("CN=entra-provisioning,O=Acme");
        let o_then_cn = der(&[&[(O, "Acme")], &[(CN, "entra-provisioning")]]);
        let cn_then_o = der(&[&[(CN, "entra-provisioning")], &[(O, "Acme")]]);
        assert!(entry_cn_first.accepts(&o_then_cn));
        assert!(!entry_cn_first.accepts(&cn_then_o));
        let entry_o_first = entry("O=Acme,CN=entra-provisioning");
        assert!(entry_o_first.accepts(&cn_then_o));
        assert!(!entry_o_first.accepts(&o_then_cn));
        // Type names in any case; values exactly.
        assert!(entry("cn=entra-provisioning, o=Acme").accepts(&o_then_cn));
        assert!(!entry("CN=entra-provisioning,O=acme").accepts(&o_then_cn));
        for refused in [
            der(&[&[(CN, "entra-provisioning, O=Acme")]]),
            der(&[&[(O, "Acme")], &[(CN, "entra-provisioning")], &[(CN, "x")]]),
            der(&[&[("2.5.4.6", "FR")], &[(O, "Acme")], &[(CN, "entra-provisioning")]]),
            der(&[&[(O, "Acme"), (CN, "entra-provisioning")]]),
            der(&[&[(O, "Acme")]]),
        ] {
            assert!(!entry_cn_first.accepts(&refused), "{refused}");
        }
        // A multi-valued RDN is a set: its attributes in any order.
        let multi = entry("CN=a+O=b,DC=example");
        assert!(multi.accepts(&der(&[&[("0.9.2342.19200300.100.1.25", "example")], &[(O, "b"), (CN, "a")]])));
        assert!(!multi.accepts(&der(&[&[("0.9.2342.19200300.100.1.25", "example")], &[(O, "b")], &[(CN, "a")]])));
        assert!(
            !multi.accepts(&der(&[&[("0.9.2342.19200300.100.1.25", "example")], &[(O, "b"), (CN, "a"), (CN, "a")]]))
        );
        // An undecoded value equals nothing, even the same bytes.
        let undecoded = |der: &[u8]| {
            DistinguishedName::new(vec![
                vec![text(O, "Acme")],
                vec![Attribute { oid: CN.into(), value: AttributeValue::Undecoded(der.to_vec()) }],
            ])
        };
        assert!(!SubjectName(undecoded(b"\x14\x01a")).accepts(&undecoded(b"\x14\x01a")));
    }
}
