"""PostgreSQL refuses UPDATE and DELETE on fills and journal rows: the ledger is append-only and a
correction is a new entry (issue #4; retention target 12: ledger history is never purged early).

TRUNCATE is left to privileges, as for the audit table: the test runner's flush truncates."""

from django.db import migrations

TABLES = ("portfolios_fill", "portfolios_journalentry", "portfolios_journalline")

SQL = """
CREATE OR REPLACE FUNCTION portfolios_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""
CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION portfolios_ledger_append_only();
"""
    for table in TABLES
)

REVERSE_SQL = "".join(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS portfolios_ledger_append_only();"
)


class Migration(migrations.Migration):
    dependencies = [("portfolios", "0001_initial")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
