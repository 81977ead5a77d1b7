module github.com/routekit/routekit/examples

go 1.26.0

replace github.com/routekit/routekit => ../
