"""The REST API: an app factory, one router per resource, one error handler. A thin shell over services."""
