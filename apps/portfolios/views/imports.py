"""Trade-import pages: /portfolios/<pk>/import/ (upload + the portfolio's imports) and
/portfolios/imports/<pk>/ (one import: the mapping form with the guesses, then a progress bar
polled with HTMX, then the report of rows and messages).

Thin: forms check shape, ``apps.portfolios.trade_import`` applies the rules (its DomainErrors become
form errors on the named field). Every door resolves the portfolio with ``selectors.portfolio_for``:
another firm's portfolio or import is 404; members who may view but not manage see the imports, not
the forms (a POST is 403).
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from apps.audit.services import Actor, RequestMeta
from apps.core.errors import DomainError
from apps.portfolios import selectors
from apps.portfolios import trade_import as service
from apps.portfolios import trade_import_core as core
from apps.portfolios.models import TradeImportStatus

PAGE_SIZE = 20
MSG_NO_FIRM = "You are not a member of any firm."
MSG_READ_ONLY = "You may see this portfolio's imports but not start one: that needs the manage permission."
FIELD_HELP = {
    "executed_at": "Date or date-time of the fill (no offset: New York time; a date alone: 16:00 New York).",
    "date": "Used when executed_at is blank on a row (Alpaca's cash activities carry only a date).",
    "symbol": "Ticker (or OCC symbol for options).",
    "side": "buy/sell, Bought/Sold, Buy to Open, Sell to Close...; without it a negative quantity is a sale.",
    "quantity": "Shares or contracts.",
    "price": "Per share (per contract unit for options).",
    "commission": "Added to fees (the sign is ignored).",
    "fees": "Added to commission (the sign is ignored).",
    "fill_id": "The broker's execution id; without it each row gets imp:<file SHA-256>:<row>.",
    "type": "trade (blank), deposit, withdrawal, dividend, fee, interest (broker words understood).",
    "amount": "Cash amount of a deposit, withdrawal, dividend, fee or interest row.",
    "asset_class": "equity, etf, crypto, option: for ambiguous symbols and for creating missing ones.",
    "memo": "Kept on cash entries.",
}


class UploadForm(forms.Form):
    file = forms.FileField(help_text="A CSV of fills and cash movements from another broker, at most 20 MB.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > service.MAX_BYTES:
            raise forms.ValidationError(service.MSG_FILE_TOO_LARGE)
        return upload


class MappingForm(forms.Form):
    """One select per field we import, choices the file's headers, initial the guess."""

    all_or_nothing = forms.BooleanField(required=False, initial=True, label="All or nothing",
                                        help_text="Any bad row and nothing is written (untick to import the good "
                                                  "rows and report the bad ones).")
    create_missing = forms.BooleanField(required=False, label="Create missing instruments",
                                        help_text="Unknown symbols are created (asset_class column, else equity).")

    def __init__(self, *args, headers: list[str], guess: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", "—")] + [(h, h) for h in headers if h]
        for name in core.FIELDS:
            self.fields[f"map_{name}"] = forms.ChoiceField(
                choices=choices, required=name in core.REQUIRED, initial=guess.get(name, ""), label=name,
                help_text=FIELD_HELP[name])

    def mapping(self) -> dict[str, str]:
        return {name: self.cleaned_data[f"map_{name}"] for name in core.FIELDS if self.cleaned_data.get(f"map_{name}")}

    def add_domain_error(self, exc: DomainError) -> None:
        named = False
        for key, messages in exc.fields.items():
            name = f"map_{key.removeprefix('mapping.')}"
            if name in self.fields:
                named = True
                for message in messages:
                    self.add_error(name, message)
        if not named:
            self.add_error(None, exc.message)


def _membership(request: HttpRequest):
    membership = getattr(request, "membership", None)
    if membership is None:
        raise PermissionDenied(MSG_NO_FIRM)
    return membership


@login_required
@require_http_methods(["GET", "POST"])
def import_upload(request: HttpRequest, pk: int) -> HttpResponse:
    membership = _membership(request)
    perm = selectors.MANAGE if request.method == "POST" else selectors.VIEW
    portfolio = selectors.portfolio_for(membership, pk, perm=perm)
    may_import = selectors.MANAGE in selectors.portfolio_perms(membership, portfolio)
    form = UploadForm() if may_import else None
    if request.method == "POST":
        form = UploadForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                imp = service.trade_import_create(
                    portfolio=portfolio, filename=upload.name, content=upload.read(),
                    actor=Actor.for_user(request.user), user=request.user, start=False,
                    meta=RequestMeta.from_request(request))
            except DomainError as exc:
                form.add_error("file", exc.message)
            else:
                return redirect("portfolios:import_detail", pk=imp.pk)
    page = Paginator(service.trade_import_list(portfolio), PAGE_SIZE).get_page(request.GET.get("page"))
    status = 400 if form is not None and form.is_bound else 200
    return render(request, "portfolios/import.html",
                  {"portfolio": portfolio, "form": form, "page": page, "may_import": may_import,
                   "read_only_message": MSG_READ_ONLY}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The mapping step (POST confirms it and queues the run), then progress, then the report. An
    HTMX request (the progress bar's own polling) gets only the status fragment."""
    membership = _membership(request)
    perm = selectors.MANAGE if request.method == "POST" else selectors.VIEW
    imp = service.trade_import_get(membership=membership, pk=pk, perm=perm)
    may_import = selectors.MANAGE in selectors.portfolio_perms(membership, imp.portfolio)
    report = service.report_rows(imp)
    form = None
    status = 200
    if report["stage"] == service.STAGE_MAPPING and imp.status == TradeImportStatus.PENDING and may_import:
        headers = report["headers"]
        if request.method == "POST":
            form = MappingForm(request.POST, headers=headers, guess=imp.mapping)
            if form.is_valid():
                try:
                    service.trade_import_start(
                        trade_import=imp, mapping=form.mapping(), actor=Actor.for_user(request.user),
                        all_or_nothing=form.cleaned_data["all_or_nothing"],
                        create_missing=form.cleaned_data["create_missing"], meta=RequestMeta.from_request(request))
                except DomainError as exc:
                    form.add_domain_error(exc)
                else:
                    return redirect("portfolios:import_detail", pk=imp.pk)
            status = 400
        else:
            form = MappingForm(headers=headers, guess=imp.mapping)
    elif request.method == "POST":
        return redirect("portfolios:import_detail", pk=imp.pk)
    done, total = service.trade_import_progress(imp)
    context = {"imp": imp, "portfolio": imp.portfolio, "report": report, "form": form, "done": done,
               "total": total, "percent": int(100 * done / total) if total else 0,
               "finished": imp.status in service.FINISHED,
               "sample": _sample(imp) if form is not None else []}
    template = "portfolios/import_status.html" if request.headers.get("HX-Request") else "portfolios/import_detail.html"
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])  # the fragment and the page share a URL
    return response


def _sample(imp) -> list[dict]:
    text = (imp.report or {}).get("source", {}).get("text", "")
    try:
        table = core.read_table(text.encode("utf-8"))
    except core.ImportFileError:
        return []
    return [{"row": line, "cells": cells} for line, cells in table.rows[:service.PREVIEW_ROWS]]


urls = [
    path("<int:pk>/import/", import_upload, name="import"),
    path("imports/<int:pk>/", import_detail, name="import_detail"),
]
