"""Threads both ways between agentrun messages and pydantic-ai messages.

agentrun keeps a provider-neutral thread (user, assistant with tool calls, tool
results, system); pydantic-ai speaks requests (user, system, tool returns) and
responses (text, tool calls). Adjacent parts of the same side are merged into one
request or response, as providers expect.
"""

from __future__ import annotations

import json

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from agentrun._models import Message, ToolCall


def to_model_messages(thread: list[Message], system: str = "") -> list[ModelMessage]:
    """The thread as pydantic-ai messages, with ``system`` first when given."""
    messages: list[ModelMessage] = []
    if system:
        messages.append(ModelRequest(parts=[SystemPromptPart(content=system)]))
    for message in thread:
        if message.role == "assistant":
            _append_response(messages, _response_parts(message))
        else:
            _append_request(messages, _request_part(message))
    return messages


def from_model_response(response: ModelResponse) -> Message:
    """A model response as one assistant message (its text and its tool calls)."""
    text = "".join(part.content for part in response.parts if isinstance(part, TextPart))
    calls = [
        ToolCall(id=part.tool_call_id, name=part.tool_name, args=part.args_as_dict())
        for part in response.parts
        if isinstance(part, ToolCallPart)
    ]
    return Message(role="assistant", content=text, tool_calls=calls)


def from_model_messages(messages: list[ModelMessage]) -> list[Message]:
    """pydantic-ai messages as an agentrun thread (the inverse of ``to_model_messages``).

    Tool results keep the text the model read; every other part keeps its content.
    """
    thread: list[Message] = []
    for message in messages:
        if isinstance(message, ModelResponse):
            thread.append(from_model_response(message))
            continue
        for part in message.parts:
            if isinstance(part, SystemPromptPart):
                thread.append(Message(role="system", content=part.content))
            elif isinstance(part, UserPromptPart) and isinstance(part.content, str):
                thread.append(Message.user(part.content))
            elif isinstance(part, ToolReturnPart):
                thread.append(
                    Message(
                        role="tool",
                        content=part.model_response_str(),
                        tool_call_id=part.tool_call_id,
                        name=part.tool_name,
                    )
                )
    return thread


def tool_result_text(content: str) -> str:
    """A tool result as the model reads it: errors as ``[CODE] MSG``."""
    try:
        result = json.loads(content)
    except ValueError:
        return content
    error = result.get("error") if isinstance(result, dict) else None
    if isinstance(error, dict):
        return f"[{error.get('code')}] {error.get('message')}"
    return content


def _request_part(message: Message) -> ModelRequestPart:
    if message.role == "system":
        return SystemPromptPart(content=message.content)
    if message.role == "tool":
        return ToolReturnPart(
            tool_name=message.name or "",
            content=tool_result_text(message.content),
            tool_call_id=message.tool_call_id or "",
        )
    return UserPromptPart(content=message.content)


def _response_parts(message: Message) -> list[ModelResponsePart]:
    parts: list[ModelResponsePart] = []
    if message.content:
        parts.append(TextPart(content=message.content))
    for call in message.tool_calls:
        parts.append(ToolCallPart(tool_name=call.name, args=dict(call.args), tool_call_id=call.id))
    return parts


def _append_request(messages: list[ModelMessage], part: ModelRequestPart) -> None:
    last = messages[-1] if messages else None
    if isinstance(last, ModelRequest):
        messages[-1] = ModelRequest(parts=[*last.parts, part])
    else:
        messages.append(ModelRequest(parts=[part]))


def _append_response(messages: list[ModelMessage], parts: list[ModelResponsePart]) -> None:
    last = messages[-1] if messages else None
    if isinstance(last, ModelResponse):
        messages[-1] = ModelResponse(parts=[*last.parts, *parts])
    else:
        messages.append(ModelResponse(parts=parts))
