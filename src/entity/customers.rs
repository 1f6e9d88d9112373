//! Customers, with FlexPrice's columns and rules. A row whose external_id is already stored
//! updates that customer.

use super::spec::{Column, Kind, Values};
use super::table::{Identity, TableSpec};
use crate::row_error::RowError;
use crate::task::EntityType;

pub struct Customers;
pub static CUSTOMERS: Customers = Customers;

const COLUMNS: &[Column] = &[
    Column::key("external_id", "cust_acme").required(),
    Column::text("name", Some(255), "Acme Inc.").required(),
    Column::of("email", Kind::Email, "billing@acme.example"),
    Column::text("contact", Some(20), "+1 555 0100"),
    Column::text("address_line1", Some(255), "1 Main Street"),
    Column::text("address_line2", Some(255), "Suite 100"),
    Column::text("address_city", Some(100), "Springfield"),
    Column::text("address_state", Some(100), "IL"),
    Column::text("address_postal_code", Some(20), "62701"),
    Column::of("address_country", Kind::Country, "US"),
    Column::of("timezone", Kind::TimeZone, "America/Chicago"),
];

impl TableSpec for Customers {
    fn entity_type(&self) -> EntityType {
        EntityType::Customers
    }

    fn table(&self) -> &'static str {
        "customers"
    }

    fn id_prefix(&self) -> &'static str {
        "cust"
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn identity(&self) -> Identity {
        Identity::UpsertBy("external_id")
    }

    fn check(&self, _values: &mut Values) -> Result<(), RowError> {
        // The timezone defaults to UTC in the store, so that an update that does not give one
        // keeps the customer's.
        Ok(())
    }
}
