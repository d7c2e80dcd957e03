"""Bar-file import pages: /markets/imports/ (upload form + the firm's jobs) and /markets/imports/<pk>/
(a job: progress polled with HTMX until it finishes, then its validation report).

Thin: the form checks shape, services.import_job_create applies the rules (its DomainErrors become
form errors on the named field), selectors read. Roles that may not import see the jobs, not the form.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods

from apps.audit.services import Actor, RequestMeta
from apps.core.errors import DomainError
from apps.marketdata.api import IMPORT_WRITE_ROLES
from apps.marketdata.models import AssetClass, ImportJob, Timeframe
from apps.marketdata.selectors import import_job_list, import_job_progress
from apps.marketdata.services import IMPORT_MAX_BYTES, MSG_FILE_TOO_LARGE, import_job_create

PAGE_SIZE = 20
MSG_NO_FIRM = "You are not a member of any firm."
MSG_READ_ONLY = "Your role ({role}) may see imports but not start one: imported bars are shared by every firm, so only owners and admins can."
FORM_FIELDS = ("file", "symbol", "timeframe", "tz", "columns", "create_instrument", "asset_class", "skip_bad_rows")


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A .csv or .parquet file of OHLCV bars, at most 50 MB.")
    symbol = forms.CharField(max_length=32)
    timeframe = forms.ChoiceField(choices=Timeframe.choices)
    tz = forms.CharField(max_length=64, initial="UTC", label="Time zone",
                         help_text="IANA zone of timestamps without an offset, e.g. America/New_York.")
    columns = forms.CharField(max_length=500, required=False, label="Column map",
                              help_text="Only if the file's column names differ: ts=Date,open=Open,volume=Vol")
    create_instrument = forms.BooleanField(required=False, help_text="Create the symbol if it is unknown.")
    asset_class = forms.ChoiceField(
        required=False, choices=[("", "—")] + [c for c in AssetClass.choices if c[0] != AssetClass.OPTION],
        help_text="Needed to create the instrument.")
    skip_bad_rows = forms.BooleanField(required=False, help_text="Import the good rows of a file with bad ones.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise forms.ValidationError(MSG_FILE_TOO_LARGE)
        return upload

    def add_domain_error(self, exc: DomainError) -> None:
        named = [f for f in exc.fields if f in self.fields]
        for name in named:
            for message in exc.fields[name]:
                self.add_error(name, message)
        if not named:
            self.add_error(None, exc.message)


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "accounts/forbidden.html", {"message": message}, status=403)


@login_required
@require_http_methods(["GET", "POST"])
def imports(request: HttpRequest) -> HttpResponse:
    membership = getattr(request, "membership", None)
    if membership is None:
        return _forbidden(request, MSG_NO_FIRM)
    may_import = membership.role in IMPORT_WRITE_ROLES
    form = None
    if request.method == "POST":
        if not may_import:
            return _forbidden(request, MSG_READ_ONLY.format(role=membership.role))
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            data = form.cleaned_data
            try:
                job = import_job_create(
                    firm_id=request.firm.pk, created_by=membership, file_name=data["file"].name,
                    content=data["file"].read(), symbol=data["symbol"], timeframe=data["timeframe"], tz=data["tz"],
                    columns=data["columns"], create_instrument=data["create_instrument"],
                    asset_class=data["asset_class"] or None, skip_bad_rows=data["skip_bad_rows"],
                    actor=Actor.for_user(request.user), meta=RequestMeta.from_request(request),
                )
            except DomainError as exc:
                form.add_domain_error(exc)
            else:
                return redirect("marketdata:import_detail", pk=job.pk)
    elif may_import:
        form = ImportForm()
    page = Paginator(import_job_list(), PAGE_SIZE).get_page(request.GET.get("page"))
    status = 400 if form is not None and form.is_bound else 200
    return render(request, "marketdata/imports.html",
                  {"form": form, "page": page, "may_import": may_import,
                   "read_only_message": MSG_READ_ONLY.format(role=membership.role)}, status=status)


@login_required
@require_GET
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The job page; an HTMX request (its own polling) gets only the status fragment."""
    if getattr(request, "membership", None) is None:
        raise Http404
    job = ImportJob.objects.select_related("created_by__user").defer("file_data").filter(pk=pk).first()
    if job is None:  # the firm scope filters: another firm's job is the same 404 as a missing one
        raise Http404("No such import.")
    context = {"job": job, "progress": import_job_progress(job), "report": job.report or {}}
    template = "marketdata/import_status.html" if request.headers.get("HX-Request") else "marketdata/import_detail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])  # the fragment and the page share a URL; never cache one as the other
    return response
