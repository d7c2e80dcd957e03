"""The data-quality page (/markets/quality/): a form (symbol, timeframe, dates) and the report.

The request is validated by the same rules as GET /api/v1/data-quality/ (apps.marketdata.api), and
its refusals become form errors on the named field.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from rest_framework.exceptions import ValidationError

from apps.marketdata.api import quality_params, quality_result
from apps.marketdata.models import Timeframe
from apps.marketdata.quality import DEFAULT_STALE_BARS

MSG_NO_FIRM = "You are not a member of any firm."


class QualityForm(forms.Form):
    symbol = forms.CharField(max_length=32)
    timeframe = forms.ChoiceField(choices=Timeframe.choices, initial=Timeframe.M1)
    start = forms.DateField(help_text="First day (UTC), YYYY-MM-DD.")
    end = forms.DateField(help_text="Last day (UTC), included.")
    stale_bars = forms.IntegerField(min_value=2, max_value=1000, required=False, initial=DEFAULT_STALE_BARS,
                                    label="Stale after", help_text="Bars in a row with the same close and no volume.")

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            self.add_error("start", "The first day must not be after the last day.")
        return data


@login_required
@require_GET
def quality(request: HttpRequest) -> HttpResponse:
    if getattr(request, "membership", None) is None:
        return render(request, "accounts/forbidden.html", {"message": MSG_NO_FIRM}, status=403)
    form = QualityForm(request.GET or None)
    result = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        params = {
            "symbol": data["symbol"], "timeframe": data["timeframe"], "start": data["start"].isoformat(),
            "end": (data["end"] + timedelta(days=1)).isoformat(),  # the page's last day is included
            "stale_bars": str(data["stale_bars"] or DEFAULT_STALE_BARS),
        }
        try:
            result = quality_result(*quality_params(params))
        except ValidationError as exc:
            for name, messages in exc.detail.items():
                for message in messages:
                    form.add_error(name if name in form.fields else None, str(message))
            result = None
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "marketdata/quality.html", {"form": form, "result": result}, status=status)
