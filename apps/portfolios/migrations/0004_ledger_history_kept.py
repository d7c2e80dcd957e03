"""Lots, realized gains, positions and corporate-action applications are never deleted (reliability
target 12: ledger and lot history are kept; default retention 6 years, and no job in Octopus purges
them). They change in place (a lot's remaining quantity, a gain washed later, a position's quantity)
but PostgreSQL refuses DELETE on them, whoever asks; a closed lot stays with quantity 0. Fills and
journal rows refuse UPDATE as well (migration 0002)."""

from django.db import migrations

TABLES = ("portfolios_lot", "portfolios_realizedgain", "portfolios_position", "portfolios_corporateactionapplication")

SQL = """
CREATE OR REPLACE FUNCTION portfolios_history_kept() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% keeps its history: DELETE refused', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"""
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION portfolios_history_kept();
"""
    for table in TABLES
)

REVERSE_SQL = "".join(f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION IF EXISTS portfolios_history_kept();"
)


class Migration(migrations.Migration):
    dependencies = [("portfolios", "0003_corporate_action_cash_in_lieu")]

    operations = [migrations.RunSQL(SQL, REVERSE_SQL)]
