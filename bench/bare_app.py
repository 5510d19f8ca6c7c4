"""The bare endpoint ingest is compared with: FastAPI, POST /v1/leads, answers 202 and nothing else."""

from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()


@app.post("/v1/leads", status_code=202)
async def post_lead() -> JSONResponse:
    return JSONResponse({"accepted": True}, status_code=202)
