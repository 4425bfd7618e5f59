module github.com/teeml/teeml

go 1.26
