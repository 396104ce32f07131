"""An app built on a vendored micro-framework (vendor/tinyweb, on sys.path via [python] path)."""
import tinyweb

app = tinyweb.App()


@app.route("GET", "/")
def index(request):
    return "tinyweb %s on zerocell: try /api/hello/you or POST JSON to /api/sum\n" % tinyweb.__version__


@app.route("GET", "/api/hello/<name>")
def hello(request, name):
    return {"hello": name, "shout": request.query.get("shout") == "1"}


@app.route("POST", "/api/sum")
def total(request):
    doc = request.json()
    if not isinstance(doc, dict) or not isinstance(doc.get("numbers"), list):
        raise tinyweb.HTTPError(400, 'expected {"numbers": [...]}')
    return 201, {"sum": sum(float(n) for n in doc["numbers"])}


application = app
