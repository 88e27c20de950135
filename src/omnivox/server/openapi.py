"""The OpenAPI document at ``/openapi.json``: every route with its real body and answers.

FastAPI describes the routes it parses itself. The chat route parses its own body
(see ``app``), so its request schema is added here from the protocol model, with its
answers: a ``ChatCompletion`` or a stream of Server-Sent Events; so are the audio
routes and the Files API's (``files_routes``), which parse their own forms and queries.
FastAPI would also promise a 422 for every route with parameters; omnivox answers those
mistakes 400 in OpenAI's shape, so the document says that instead. Property-based
fuzzing reads this document (tests/api/test_fuzz.py), so what it says is what gets tested.
"""

from __future__ import annotations

from typing import Any, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from omnivox.protocol.audio import (
    CreateSpeechRequest,
    CreateTranscriptionForm,
    CreateTranslationForm,
    Transcription,
)
from omnivox.protocol.batches import CreateBatchRequest
from omnivox.protocol.files import (
    MAX_EXPIRES_AFTER_S,
    MAX_LIST_LIMIT,
    MIN_EXPIRES_AFTER_S,
    DeleteFileResponse,
    FilePurpose,
    ListFilesResponse,
    OpenAIFile,
)
from omnivox.protocol.realtime import ClientSecretCreateRequest
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.protocol.responses import ChatCompletion
from omnivox.protocol.responses_api import CreateResponseRequest, ListInputItemsQuery

CHAT_PATH = "/v1/chat/completions"
SPEECH_PATH = "/v1/audio/speech"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
TRANSLATIONS_PATH = "/v1/audio/translations"
FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"
RESPONSES_PATH = "/v1/responses"
CLIENT_SECRETS_PATH = "/v1/realtime/client_secrets"
FILE_PATH = "/v1/files/{file_id}"
FILE_CONTENT_PATH = "/v1/files/{file_id}/content"
SCHEMAS_REF = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
ERROR_STATUSES = {
    "400": "Invalid request",
    "401": "Missing or wrong API key",
    "403": "Not allowed",
    "404": "Unknown model, file or URL",
    "408": "The request did not arrive in time",
    "413": "Request body too large",
    "415": "Body not sent as JSON",
    "429": "Over a rate limit",
    "500": "Server error",
    "503": "Overloaded",
}


def describe_routes(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the complete document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            _add_chat_route(document)
            _add_audio_routes(document)
            _add_file_routes(document)
            _add_batch_routes(document)
            _add_responses_routes(document)
            _add_client_secrets_route(document)
            _errors_in_openai_shape(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_chat_route(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (CreateChatCompletionRequest, ChatCompletion):
        schema = model.model_json_schema(ref_template=SCHEMAS_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    document["paths"][CHAT_PATH] = {
        "post": {
            "summary": "Create a chat completion, with text and spoken audio in and out",
            "operationId": "createChatCompletion",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/CreateChatCompletionRequest"}
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "A completion, or with stream: true its chunks as events",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/ChatCompletion"}
                        },
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                }
            },
        }
    }


def _schema_ref(document: dict[str, Any], model: Any) -> dict[str, str]:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schema = model.model_json_schema(ref_template=SCHEMAS_REF)
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": SCHEMAS_REF.format(model=model.__name__)}


def _form_schema(document: dict[str, Any], model: Any) -> dict[str, Any]:
    """A multipart form: the model's fields as text parts (``name[]`` for arrays), and
    the audio ``file``."""
    schema = model.model_json_schema()
    properties = {
        (f"{name}[]" if spec.get("type") == "array" else name): spec
        for name, spec in schema["properties"].items()
    }
    properties["file"] = {"type": "string", "format": "binary"}
    return {
        "type": "object",
        "required": ["file", *schema.get("required", [])],
        "properties": properties,
    }


def _add_audio_routes(document: dict[str, Any]) -> None:
    audio = {"audio/*": {"schema": {"type": "string", "format": "binary"}}}
    events = {"text/event-stream": {"schema": {"type": "string"}}}
    text = {
        "application/json": {"schema": _schema_ref(document, Transcription)},
        "text/plain": {"schema": {"type": "string"}},
        "text/vtt": {"schema": {"type": "string"}},
    }
    paths = document["paths"]
    paths[SPEECH_PATH] = {
        "post": {
            "summary": "Read text aloud: the audio in the format asked for, streamed as made",
            "operationId": "createSpeech",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(document, CreateSpeechRequest)}
                },
            },
            "responses": {"200": {"description": "The audio", "content": {**audio, **events}}},
        }
    }
    for path, model, operation, summary in (
        (
            TRANSCRIPTIONS_PATH,
            CreateTranscriptionForm,
            "createTranscription",
            "Write down the speech of an audio file",
        ),
        (
            TRANSLATIONS_PATH,
            CreateTranslationForm,
            "createTranslation",
            "Write down the speech of an audio file in English",
        ),
    ):
        paths[path] = {
            "post": {
                "summary": summary,
                "operationId": operation,
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _form_schema(document, model)}},
                },
                "responses": {
                    "200": {"description": "The transcript", "content": {**text, **events}}
                },
            }
        }


def _json_answer(document: dict[str, Any], model: Any, description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": _schema_ref(document, model)}}
    return {"200": {"description": description, "content": content}}


def _add_file_routes(document: dict[str, Any]) -> None:
    upload = {
        "type": "object",
        "required": ["file", "purpose"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "purpose": {"type": "string", "enum": list(get_args(FilePurpose))},
            "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
            "expires_after[seconds]": {
                "type": "integer",
                "minimum": MIN_EXPIRES_AFTER_S,
                "maximum": MAX_EXPIRES_AFTER_S,
            },
        },
    }
    listing = [
        {"name": "purpose", "in": "query", "schema": {"type": "string"}},
        {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
        },
        {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
        {"name": "after", "in": "query", "schema": {"type": "string"}},
    ]
    file_id = [{"name": "file_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    paths = document["paths"]
    paths[FILES_PATH] = {
        "post": {
            "summary": "Upload a file (a batch's requests, as JSON Lines, among others)",
            "operationId": "createFile",
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": upload}},
            },
            "responses": _json_answer(document, OpenAIFile, "The file"),
        },
        "get": {
            "summary": "List the caller's files, newest first unless asked otherwise",
            "operationId": "listFiles",
            "parameters": listing,
            "responses": _json_answer(document, ListFilesResponse, "A page of files"),
        },
    }
    paths[FILE_PATH] = {
        "get": {
            "summary": "Retrieve a file's description",
            "operationId": "retrieveFile",
            "parameters": file_id,
            "responses": _json_answer(document, OpenAIFile, "The file"),
        },
        "delete": {
            "summary": "Delete a file",
            "operationId": "deleteFile",
            "parameters": file_id,
            "responses": _json_answer(document, DeleteFileResponse, "The file, deleted"),
        },
    }
    binary = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    paths[FILE_CONTENT_PATH] = {
        "get": {
            "summary": "Download a file's bytes",
            "operationId": "downloadFile",
            "parameters": file_id,
            "responses": {"200": {"description": "The file's bytes", "content": binary}},
        }
    }


BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's batch object",
    "required": ["id", "object", "endpoint", "input_file_id", "completion_window", "status"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "enum": ["batch"]},
        "endpoint": {"type": "string"},
        "input_file_id": {"type": "string"},
        "completion_window": {"type": "string"},
        "status": {
            "type": "string",
            "enum": [
                "validating",
                "failed",
                "in_progress",
                "finalizing",
                "completed",
                "expired",
                "cancelling",
                "cancelled",
            ],
        },
        "created_at": {"type": "integer"},
        "request_counts": {"type": "object"},
    },
}


def _add_batch_routes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    schemas["Batch"] = BATCH_SCHEMA
    batch = {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}}
    answer = {"200": {"description": "The batch", "content": batch}}
    page = {
        "type": "object",
        "required": ["object", "data", "has_more"],
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Batch"}},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
    }
    batch_id = [{"name": "batch_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    paths = document["paths"]
    paths[BATCHES_PATH] = {
        "post": {
            "summary": "Create a batch of chat, Responses or audio requests from a file",
            "operationId": "createBatch",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(document, CreateBatchRequest)}
                },
            },
            "responses": answer,
        },
        "get": {
            "summary": "List the caller's batches, newest first",
            "operationId": "listBatches",
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
            ],
            "responses": {
                "200": {
                    "description": "A page of batches",
                    "content": {"application/json": {"schema": page}},
                }
            },
        },
    }
    paths[BATCHES_PATH + "/{batch_id}"] = {
        "get": {
            "summary": "Retrieve a batch",
            "operationId": "retrieveBatch",
            "parameters": batch_id,
            "responses": answer,
        }
    }
    paths[BATCHES_PATH + "/{batch_id}/cancel"] = {
        "post": {
            "summary": "Cancel a batch: the lines answered are kept",
            "operationId": "cancelBatch",
            "parameters": batch_id,
            "responses": answer,
        }
    }


def _add_responses_routes(document: dict[str, Any]) -> None:
    """The create route's body and the input items' query (their handlers read the
    request themselves); the rest FastAPI documents from the handlers."""
    response = {"type": "object", "required": ["id", "object", "status", "output"]}
    paths = document["paths"]
    paths[RESPONSES_PATH]["post"].update(
        {
            "summary": "Create a response (OpenAI's Responses API), streamed with stream: true",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(document, CreateResponseRequest)}
                },
            },
            "responses": {
                "200": {
                    "description": "The response, or with stream: true its events",
                    "content": {
                        "application/json": {"schema": response},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                }
            },
        }
    )
    query = ListInputItemsQuery.model_json_schema()["properties"]
    listing = paths[RESPONSES_PATH + "/{response_id}/input_items"]["get"]
    listing["parameters"] = [
        *listing.get("parameters", []),
        *({"name": name, "in": "query", "schema": schema} for name, schema in query.items()),
    ]


def _add_client_secrets_route(document: dict[str, Any]) -> None:
    """Its handler reads the body itself (``client_secrets_routes``)."""
    secret = {
        "type": "object",
        "required": ["value", "expires_at", "session"],
        "properties": {
            "value": {"type": "string"},
            "expires_at": {"type": "integer"},
            "session": {"type": "object", "required": ["type", "object", "id"]},
        },
    }
    document["paths"][CLIENT_SECRETS_PATH]["post"].update(
        {
            "summary": "Mint a Realtime client secret (an ephemeral key) and its session",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _schema_ref(document, ClientSecretCreateRequest)}
                },
            },
            "responses": {
                "200": {
                    "description": "The secret, its expiry and its session",
                    "content": {"application/json": {"schema": secret}},
                }
            },
        }
    )


def _errors_in_openai_shape(document: dict[str, Any]) -> None:
    document["components"]["schemas"]["Error"] = ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path_item in document["paths"].values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in ERROR_STATUSES.items():
                responses.setdefault(status, {"description": description, "content": error})
    schemas = document["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
