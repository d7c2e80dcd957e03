from django.http import JsonResponse


def lockout_response(request, credentials, *args, **kwargs):
    return JsonResponse({"error": {"code": "LOCKED_OUT", "message": "Too many failed attempts.", "fields": {}}}, status=429)
