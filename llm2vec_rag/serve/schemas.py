"""Request and response bodies: OpenAI ``/v1/embeddings`` and TEI ``/embed`` (pydantic).

Unknown fields are refused (as OpenAI does), so a typo is an error rather than a silently
ignored option. ``input_type`` / ``instruction`` (and TEI's ``prompt_name``) are this
server's extensions: LLM2Vec models embed queries with an instruction, documents without.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

InputType = Literal["query", "document"]


class EmbeddingsRequest(BaseModel):
    """OpenAI's create-embeddings request (text input only) plus two extensions."""

    model_config = ConfigDict(extra="forbid")

    input: StrictStr | list[StrictStr] = Field(
        description="A text, or a list of texts (token-id arrays are not accepted)")
    model: StrictStr = Field(description="A model id from GET /v1/models")
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="float (default) or base64: little-endian float32 bytes")
    dimensions: StrictInt | None = Field(
        None, description="Only the model's own dimension is accepted (no truncation)")
    user: StrictStr | None = None
    input_type: InputType | None = Field(
        None, description="Extension: query (the model's query instruction) or document "
                          "(default); the '<model>-query' id means query")
    instruction: StrictStr | None = Field(
        None, description="Extension: an explicit instruction, attended to but not pooled")
    truncate: StrictBool | None = Field(
        None, description="Extension, TEI's flag: true embeds the first max_length tokens of "
                          "an over-long text; false answers 413 (default: the server's "
                          "--auto-truncate, off)")
    late_chunking: StrictBool = Field(
        False, description="Extension (Jina's name): the inputs are consecutive chunks of one "
                           "document, joined with one space and encoded in one pass; each "
                           "vector is its chunk pooled in the whole document's context")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str  # str: base64 of little-endian float32
    index: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class EmbedRequest(BaseModel):
    """TEI's ``/embed`` request; ``prompt_name`` takes ``query`` / ``document`` here."""

    model_config = ConfigDict(extra="forbid")

    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    truncate: StrictBool | None = Field(
        None, description="true embeds the first max_length tokens of an over-long text; "
                          "false answers 413 (default: the server's --auto-truncate, off)")
    truncation_direction: Literal["right", "Right"] = Field(
        "right", description="Only right: the end of a text is cut, the instruction is kept")
    prompt_name: InputType | None = None
    instruction: StrictStr | None = None
    late_chunking: StrictBool = Field(
        False, description="The inputs are consecutive chunks of one document (see "
                           "/v1/embeddings)")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm2vec-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error format, used for every error of every route."""

    error: ErrorDetail
