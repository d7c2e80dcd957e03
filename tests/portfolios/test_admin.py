"""The portfolio admin: portfolios and tax entities change through the audited services; the books are read-only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.tenancy import firm_scope
from apps.portfolios.models import Fill, JournalEntry, Portfolio, TaxEntity

pytestmark = pytest.mark.django_db

FORM = {"name": "Admin made", "base_currency": "USD", "mode": "paper", "cost_basis_method": "lifo",
        "benchmark": "", "tax_entity": "", "restricted": "on"}


def admin_url(model: str, view: str, *args) -> str:
    return reverse(f"admin:portfolios_{model}_{view}", args=args)


def test_owner_adds_a_portfolio_through_the_service(firm_a, stocks, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    response = client.post(admin_url("portfolio", "add"), {**FORM, "benchmark": stocks["SPY"].pk})
    assert response.status_code == 302, response.content.decode()[:2000]
    with firm_scope(firm_a.firm.pk):
        made = Portfolio.objects.get(name="Admin made")
        assert (made.cost_basis_method, made.restricted, made.benchmark_id) == ("lifo", True, stocks["SPY"].pk)
        assert made.tax_entity.name == "Firm"  # the default entity when left empty
        events = list(AuditEvent.objects.filter(target_id=str(made.pk)).values_list("action", flat=True))
    assert events == ["portfolio.created"]  # the service's event, not a second admin one


def test_duplicate_name_is_refused_with_a_message(firm_a, portfolio, verified_client_for):
    client = verified_client_for(firm_a.member("admin"))
    response = client.post(admin_url("portfolio", "add"), {**FORM, "name": "Main"}, follow=True)
    assert "A portfolio named &#x27;Main&#x27; exists." in response.content.decode()
    with firm_scope(firm_a.firm.pk):
        assert Portfolio.objects.count() == 1


def test_method_change_after_fills_is_refused_and_rename_is_audited(firm_a, portfolio, stocks, book,
                                                                    verified_client_for):
    book(portfolio, stocks["AAPL"], "buy", "10", "100", "2024-01-03")
    client = verified_client_for(firm_a.member("owner"))
    change = admin_url("portfolio", "change", portfolio.pk)
    form = {**FORM, "name": "Main", "cost_basis_method": "lifo", "restricted": "",
            "tax_entity": portfolio.tax_entity_id}
    form.pop("restricted")
    response = client.post(change, form, follow=True)
    assert "cannot change once fills are booked." in response.content.decode().lower()
    portfolio.refresh_from_db()
    assert portfolio.cost_basis_method == "fifo"
    response = client.post(change, {**form, "cost_basis_method": "fifo", "name": "Main book"})
    assert response.status_code == 302
    portfolio.refresh_from_db()
    assert portfolio.name == "Main book"
    with firm_scope(firm_a.firm.pk):
        event = AuditEvent.objects.get(action="portfolio.updated")
    assert (event.before, event.after) == ({"name": "Main"}, {"name": "Main book"})


def test_owner_adds_a_tax_entity_and_cannot_rename_it(firm_a, verified_client_for):
    client = verified_client_for(firm_a.member("owner"))
    assert client.post(admin_url("taxentity", "add"), {"name": "Trust"}).status_code == 302
    with firm_scope(firm_a.firm.pk):
        entity = TaxEntity.objects.get(name="Trust")
        assert AuditEvent.objects.filter(action="tax_entity.created").count() == 1
    response = client.post(admin_url("taxentity", "change", entity.pk), {"name": "Renamed"})
    assert response.status_code == 403
    entity.refresh_from_db()
    assert entity.name == "Trust"


def test_compliance_reads_but_does_not_change_portfolios(firm_a, portfolio, verified_client_for):
    client = verified_client_for(firm_a.member("compliance"))
    assert client.get(admin_url("portfolio", "changelist")).status_code == 200
    assert client.get(admin_url("portfolio", "add")).status_code == 403
    response = client.post(admin_url("portfolio", "change", portfolio.pk), {**FORM, "name": "Hijack"})
    assert response.status_code == 403
    portfolio.refresh_from_db()
    assert portfolio.name == "Main"


@pytest.mark.parametrize("model", ["fill", "journalentry", "lot", "realizedgain", "position", "snapshot",
                                   "corporateaction", "tradeimport"])
def test_books_are_read_only_even_for_owners(firm_a, portfolio, stocks, book, verified_client_for, model):
    book(portfolio, stocks["AAPL"], "buy", "10", "100", "2024-01-03", fill_id="B1")
    client = verified_client_for(firm_a.member("owner"))
    assert client.get(admin_url(model, "changelist")).status_code == 200
    assert client.get(admin_url(model, "add")).status_code == 403


def test_journal_entry_shows_its_lines_and_cannot_be_changed(firm_a, portfolio, stocks, book, verified_client_for):
    book(portfolio, stocks["AAPL"], "buy", "10", "100", "2024-01-03", fill_id="B1", fees="1.5")
    with firm_scope(firm_a.firm.pk):
        entry = JournalEntry.objects.get(fill__fill_id="B1")
        fill = Fill.objects.get(fill_id="B1")
    client = verified_client_for(firm_a.member("owner"))
    page = client.get(admin_url("journalentry", "change", entry.pk)).content.decode()
    assert 'name="lines-TOTAL_FORMS" value="3"' in page  # cash for the principal, cash for the fee, securities
    assert "<p>principal</p>" in page
    assert client.post(admin_url("journalentry", "change", entry.pk), {"memo": "x"}).status_code == 403
    assert client.post(admin_url("fill", "delete", fill.pk), {"post": "yes"}).status_code == 403
    with firm_scope(firm_a.firm.pk):
        assert Fill.objects.get(pk=fill.pk).price == Decimal(100)
