"""The REST API (/api/v1/): Django REST framework over the same services and selectors as the pages."""
