//! Property tests: arbitrary bytes through every reader and the event validator never panic
//! or hang, and every failure is a clean error. Resuming at any record boundary reads what a
//! single pass reads. The number of cases is bounded (PROPTEST_CASES raises it for long runs).

use std::io::BufRead;
use std::sync::Arc;

use flexprice_import::entity::{self, ValidRecord};
use flexprice_import::reader::{self, Format, Resume};
use flexprice_import::task::EntityType;
use proptest::prelude::*;

const FORMATS: [Format; 3] = [Format::Csv, Format::Jsonl, Format::Json];

/// Reads and validates every record of `bytes`, as the import does. Returns the records'
/// positions and raw text, and whether reading ended on an error.
fn import_all(
    format: Format,
    bytes: &[u8],
    resume: Option<Resume>,
    limit: usize,
) -> (Vec<(String, bool)>, reader::ResumePoint, bool) {
    import_as(EntityType::Events, format, bytes, resume, limit)
}

fn import_as(
    entity: EntityType,
    format: Format,
    bytes: &[u8],
    resume: Option<Resume>,
    limit: usize,
) -> (Vec<(String, bool)>, reader::ResumePoint, bool) {
    let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(bytes.to_vec()));
    let mut reader = match reader::open(format, Default::default(), input, Arc::default(), resume) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return (Vec::new(), Default::default(), true);
        }
    };
    let events = entity::registry(entity).unwrap();
    let header_len = reader.header().map(<[String]>::len);
    let Ok(mut validator) = events.validator(reader.header(), &Default::default()) else {
        return (Vec::new(), Default::default(), true);
    };
    let mut seen = Vec::new();
    loop {
        if seen.len() >= limit {
            return (seen, reader.resume_point(), false);
        }
        match reader.next_record() {
            Ok(Some(record)) => {
                let outcome = entity::validate(validator.as_mut(), header_len, &record);
                match &outcome {
                    Ok(ValidRecord::Event(e)) => assert!(!e.event_id.is_empty() && !e.event_name.is_empty()),
                    Ok(ValidRecord::Row(row)) => assert!(!row.values.values.is_empty()),
                    Err(err) => assert!(!err.reason.is_empty()),
                }
                seen.push((
                    format!("{}:{}", record.position, String::from_utf8_lossy(record.raw)),
                    outcome.is_ok(),
                ));
            }
            Ok(None) => return (seen, reader.resume_point(), false),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                return (seen, reader.resume_point(), true);
            }
        }
    }
}

/// Text made of the characters that matter to CSV and JSON, so that quoting, nesting and line
/// ends come up far more often than in random bytes.
fn structured() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b",".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b":".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"event_name,external_customer_id,timestamp,properties\n".to_vec()),
        Just(b"{\"event_name\":\"a\",\"external_customer_id\":\"c\"}".to_vec()),
        Just(b"2024-03-20T15:04:05Z".to_vec()),
        Just(b"\"properties\":".to_vec()),
        Just(
            b"amount,currency,entity_type,entity_id,type,billing_period,billing_model,invoice_cadence,tiers\n".to_vec()
        ),
        Just(b"10.5,USD,PLAN,p1,FIXED,MONTHLY,TIERED,ADVANCE,".to_vec()),
        Just(b"[{\"up_to\":1,\"unit_amount\":\"-1\"}]".to_vec()),
        Just(b"external_id,name,email,address_country,timezone\n".to_vec()),
        Just(b"name,type,aggregation_type,event_name\n".to_vec()),
        Just(b"metered,SUM,".to_vec()),
        "[a-z0-9 ]{0,6}".prop_map(String::into_bytes),
        any::<u8>().prop_map(|b| vec![b]),
    ];
    proptest::collection::vec(piece, 0..80).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for format in FORMATS {
            for entity in EntityType::ALL {
                import_as(*entity, format, &bytes, None, usize::MAX);
            }
        }
    }

    #[test]
    fn structured_text_never_panics(bytes in structured()) {
        for format in FORMATS {
            for entity in EntityType::ALL {
                import_as(*entity, format, &bytes, None, usize::MAX);
            }
        }
    }

    #[test]
    fn resuming_at_any_record_reads_what_one_pass_reads(bytes in structured(), cut in 1usize..12) {
        // The source drops a byte-order mark before readers see the data; offsets count from there.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&bytes).to_vec();
        for format in FORMATS {
            let (all, _, failed) = import_all(format, &bytes, None, usize::MAX);
            if failed || all.len() < cut {
                continue;
            }
            let (first, point, _) = import_all(format, &bytes, None, cut);
            let header = (format == Format::Csv).then(|| {
                let input: Box<dyn BufRead + Send> = Box::new(std::io::Cursor::new(bytes.clone()));
                let r = reader::open(format, Default::default(), input, Arc::default(), None).unwrap();
                r.header().unwrap().to_vec()
            });
            let rest_bytes = &bytes[point.byte as usize..];
            let resume = Resume { point: point.clone(), header };
            let (rest, _, _) = import_all(format, rest_bytes, Some(resume), usize::MAX);
            let joined: Vec<_> = first.into_iter().chain(rest).collect();
            prop_assert_eq!(joined, all, "{} resumed after {} records at {:?}", format, cut, point);
        }
    }
}
